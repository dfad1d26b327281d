"""What the final answer did not read: the note it carries, so it never claims more than was read.

A chat service shows our answer as the truth, so the answer text itself says what
was left out; ``errors`` and ``usage`` say it to programs. Only the depth-0 level
writes user text: nested levels pass their ``errors`` up (and keep answering
``NO_RELEVANT_INFORMATION``), and the final synthesis calls :func:`settle_answer`.

What is reported, from the run's ``errors`` (by their ``kind``) and focused reading:

- parts that failed after their retries (``answer.failed``);
- parts skipped to stay within the budget (``answer.skipped``);
- findings shortened to fit a synthesis call (``answer.truncated``);
- replies that could not be read, even after a corrective retry (``answer.unparsed``,
  from ``errors`` of kind ``"unparsed"``; :mod:`rlm_graph.replies`);
- a run whose every reading said "nothing relevant" while the retrieval index finds the
  question's terms in the text (``answer.all_nothing_but_index``, with the best-scoring spans);
- focused reading that stopped before reading every part (``answer.focused_incomplete``
  or, when the synthesis said the answer was complete, ``answer.focused_complete``);
- navigate mode's reading: how much of the text a reader (``ask``, ``ask_all``) or the
  root model (``peek``) saw, when it was not all (``answer.navigate_read_part``, or
  ``answer.navigate_read_none`` when the answer rests on search results alone).

When nothing relevant was found but some of the text was not read, the answer is
``answer.not_found_in_read`` with the notes, never ``no_answer_message``: absence is
claimed only for a document read in full. The templates are progress-message keys,
so ``progress_messages`` (graph or per run) localizes them; an empty template drops
its note.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rlm_graph.progress import format_message
from rlm_graph.prompts import is_no_relevant
from rlm_graph.state import PartError

__all__ = ["MAX_LISTED_SPANS", "Coverage", "merged_spans", "settle_answer", "subtract_spans"]

MAX_LISTED_SPANS = 5
"""Character ranges listed in a note before ``answer.more_spans`` sums up the rest."""


def merged_spans(spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Union of spans, in order (a nested failure inside a failed parent span is counted once).

    Args:
        spans: ``(start, end)`` pairs, in any order, overlapping or not.

    Returns:
        Disjoint spans in document order.
    """
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def subtract_spans(spans: Sequence[tuple[int, int]], removed: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """What of ``spans`` lies outside ``removed``.

    Args:
        spans: ``(start, end)`` pairs.
        removed: ``(start, end)`` pairs to take out.

    Returns:
        Disjoint spans in document order.
    """
    left: list[tuple[int, int]] = []
    cuts = merged_spans(removed)
    for start, end in merged_spans(spans):
        for cut_start, cut_end in cuts:
            if cut_end <= start or cut_start >= end:
                continue
            if cut_start > start:
                left.append((start, cut_start))
            start = max(start, cut_end)
            if start >= end:
                break
        if start < end:
            left.append((start, end))
    return left


def _share(spans: Sequence[tuple[int, int]], chars: int) -> str:
    covered = sum(end - start for start, end in spans)
    if chars <= 0 or covered <= 0:
        return "0%"
    percent = 100 * covered / chars
    return "<1%" if percent < 1 else f"{round(percent)}%"


@dataclass(frozen=True, kw_only=True)
class Coverage:
    """What one run read, from its ``errors`` and focused-reading counts."""

    chars: int
    """Length of the document."""
    errors: Sequence[PartError] = ()
    parts_read: int = 0
    """Focused reading: top-level parts read."""
    parts_total: int = 0
    """Focused reading: top-level parts planned."""
    complete: bool = False
    """Focused reading: the synthesis said the findings answer the question."""
    read: Sequence[tuple[int, int]] | None = None
    """Navigate mode: the spans a reader or the root model read (``None``: the run read by parts)."""
    unread: Sequence[tuple[int, int]] = ()
    """Navigate mode: the text no one read (blank stretches aside)."""
    suspected: Sequence[tuple[int, int]] = ()
    """Spans the retrieval index scores as holding the question's terms, when every reading said
    "nothing relevant" (see :func:`rlm_graph.retrieval.suspected_spans`): said only with no answer."""

    def spans(self, kind: str) -> list[tuple[int, int]]:
        """Merged spans of the errors of one kind (an error without ``kind`` is ``"failed"``)."""
        return merged_spans([(e["start"], e["end"]) for e in self.errors if e.get("kind", "failed") == kind])

    @property
    def parts_unread(self) -> int:
        """Focused reading: top-level parts never read."""
        return max(self.parts_total - self.parts_read, 0)

    @property
    def read_in_full(self) -> bool:
        """Whether every part was read, none failed and none was skipped (truncation aside)."""
        return (
            not self.spans("failed")
            and not self.spans("skipped")
            and not self.spans("unparsed")
            and not self.parts_unread
            and not self.unread
        )

    def usage(self) -> dict[str, int]:
        """Usage counters of this coverage, for the depth-0 ``usage``."""
        counts = {
            "parts_skipped": len(self.spans("skipped")),
            "findings_truncated": len(self.spans("truncated")),
        }
        if self.parts_total:
            counts["parts_unread"] = self.parts_unread
            counts["stopped_early"] = int(bool(self.parts_unread) and not self.complete)
        if self.read is not None:
            counts["chars_read"] = sum(end - start for start, end in merged_spans(self.read))
        return counts

    def notes(self, templates: Mapping[str, str]) -> list[str]:
        """The notes to append to the answer, in the user's language.

        Args:
            templates: Message templates (``progress_messages`` merged over the defaults).

        Returns:
            One sentence per kind of gap, empty when the document was read in full.
        """
        notes = [
            self._span_note(templates, "answer.failed", self.spans("failed")),
            self._span_note(templates, "answer.skipped", self.spans("skipped")),
            self._span_note(templates, "answer.unparsed", self.spans("unparsed")),
        ]
        if self.parts_unread:
            key = "answer.focused_complete" if self.complete else "answer.focused_incomplete"
            notes.append(
                _message(templates, key, read=self.parts_read, total=self.parts_total, unread=self.parts_unread)
            )
        if self.read is not None and self.unread:
            read = merged_spans(self.read)
            notes.append(
                self._span_note(templates, "answer.navigate_read_part", read)
                if read
                else _message(templates, "answer.navigate_read_none")
            )
        notes.append(self._span_note(templates, "answer.truncated", self.spans("truncated")))
        return [note for note in notes if note]

    def _span_note(self, templates: Mapping[str, str], key: str, spans: list[tuple[int, int]]) -> str:
        if not spans:
            return ""
        listed = ", ".join(f"{start}-{end}" for start, end in spans[:MAX_LISTED_SPANS])
        if len(spans) > MAX_LISTED_SPANS:
            listed = _message(templates, "answer.more_spans", spans=listed, more=len(spans) - MAX_LISTED_SPANS)
        return _message(templates, key, count=len(spans), spans=listed, share=_share(spans, self.chars))


def _message(templates: Mapping[str, str], key: str, **fields: Any) -> str:
    if key in templates and not templates[key]:
        return ""  # the user switched this note off
    return format_message(templates, key, **fields)


def settle_answer(
    answer: str,
    coverage: Coverage,
    templates: Mapping[str, str],
    no_answer_message: str,
) -> tuple[str, bool]:
    """The depth-0 answer text: the answer with its notes, or the right "nothing found".

    Args:
        answer: The synthesized answer (or ``NO_RELEVANT_INFORMATION``).
        coverage: What the run read.
        templates: Message templates (``progress_messages`` merged over the defaults).
        no_answer_message: The answer when a document read in full holds nothing relevant.

    Returns:
        The text for the user, and whether it is an answer (False: nothing relevant was found).
    """
    notes = coverage.notes(templates)
    if is_no_relevant(answer):
        # Only text that was read and said "nothing": a failed or skipped part was not read at all.
        unread = [*coverage.spans("failed"), *coverage.spans("skipped"), *coverage.spans("unparsed")]
        doubted = subtract_spans(coverage.suspected, unread)
        doubt = coverage._span_note(templates, "answer.all_nothing_but_index", doubted)
        if coverage.read_in_full:
            # Every part was read: absence is established (a truncation note cannot change that),
            # unless the search index finds the question's terms where the readers saw nothing.
            return " ".join(part for part in (no_answer_message, doubt) if part), False
        head = _message(templates, "answer.not_found_in_read")
        return " ".join(part for part in (head, *notes, doubt) if part), False
    if not notes:
        return answer, True
    return answer.rstrip() + "\n\n" + " ".join(notes), True

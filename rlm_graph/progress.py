"""Progress message templates and the event writer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langgraph.config import get_stream_writer

from rlm_graph.state import USAGE_COUNTERS, ProgressEvent, Stage, Status, Usage

DEFAULT_PROGRESS_MESSAGES: Mapping[str, str] = {
    "check.started": "Measuring the text ({chars:,} characters)",
    "check.fits": "The text fits in one model call",
    "check.too_long": "The text is too long for one model call; splitting it",
    "check.empty": "The document is empty",
    "split.started": "Splitting the text into parts",
    "split.reading_ahead": (
        "Planned {parts} {parts:part|parts} ({done:,} of {total:,} characters); "
        "reading {parts:it|them} while the rest is planned"
    ),
    "split.done": "Split into {total} {total:part|parts}",
    "split.skipped": "Skipping characters {start}-{end}: {error}",
    "analysis.processing": "Reading part {index} of {total} ({done} of {total} done)",
    "analysis.recursing": "Part {index} of {total} is still too long; splitting it further",
    "analysis.done": "Read {done} of {total} {total:part|parts}",
    "analysis.cached": "Part {index} of {total} came from the cache",
    "analysis.failed": "Part {index} of {total} could not be read: {error}",
    "analysis.unsupported_quotes": (
        "Part {index} of {total}: {count} {count:quote|quotes} could not be found in the part"
    ),
    "analysis.unparsed": "Part {index} of {total}: the model's reply could not be read, even when asked again",
    "analysis.escalated": "Part {index} of {total} was unclear to the small model; the large model reads it again",
    "analysis.more": "Reading {count} more {count:part|parts}, most relevant first",
    "analysis.focused": (
        "Read the {done} most relevant of {parts} {parts:part|parts}; the other {skipped} {skipped:was|were} not read"
    ),
    "split.mode": "Reading mode: {mode} ({reason})",
    "split.index": "Relevance index built in {seconds}s",
    "split.index_reused": "Relevance index reused from an earlier question",
    "synthesis.started": "Combining {total} {total:finding|findings}",
    "synthesis.processing": "Combined {done} of {total} {total:group|groups} of findings",
    "synthesis.done": "Answer ready",
    "synthesis.nested_done": "Findings combined",
    "direct.started": "Answering from the whole text",
    "direct.done": "Answer ready",
    # A nested level's messages start with where it sits: "Part 3 of 8 > Read 2 of 5 parts".
    "progress.parent": "Part {index} of {total}",
    # Retries of a model-calling node, before LangGraph's retry policy waits and tries again.
    "retry.part": "Retrying part {index} of {total} in {seconds} s: {reason}, attempt {attempt} of {attempts}",
    "retry.answer": "Retrying the answer in {seconds} s: {reason}, attempt {attempt} of {attempts}",
    "retry.synthesis": "Retrying the synthesis in {seconds} s: {reason}, attempt {attempt} of {attempts}",
    "rewrite.unparsed": "Could not read the rewritten follow-up ({error}); answering the question as you wrote it",
    # Notes the final answer carries when the document was not read in full (rlm_graph.coverage).
    # An empty template drops its note.
    "answer.not_found_in_read": "Nothing relevant to the question was found in the parts that were read.",
    "answer.failed": (
        "{count} {count:part|parts} of the document could not be read (characters {spans}, {share} of the text), "
        "so the answer does not cover {count:it|them}."
    ),
    "answer.skipped": (
        "{count} {count:part|parts} of the document {count:was|were} not read, to stay within the budget "
        "(characters {spans}, {share} of the text), so the answer does not cover {count:it|them}."
    ),
    "answer.unparsed": (
        "The model's replies about {count} {count:part|parts} of the document could not be read, even when "
        "asked again (characters {spans}, {share} of the text), so the answer does not cover {count:it|them}."
    ),
    "answer.all_nothing_but_index": (
        "Every part read was reported as holding nothing relevant, yet a search of the text finds the "
        "question's terms in it (characters {spans}): the reading may have missed them."
    ),
    "answer.truncated": (
        "{count} {count:finding was|findings were} too long to combine and {count:was|were} shortened "
        "(from characters {spans}), so some details may be missing."
    ),
    "answer.focused_incomplete": (
        "Read {read} of {total} {total:part|parts}, the most relevant; the other {unread} {unread:was|were} not read, "
        "so the answer may be incomplete."
    ),
    "answer.focused_complete": (
        "Read {read} of {total} {total:part|parts}, the most relevant; the other {unread} {unread:was|were} not needed."
    ),
    "answer.more_spans": "{spans} and {more} more",
}
"""Message templates by key. Fields: ``depth``, ``done``, ``total``, ``index``,
``start``, ``end``, ``chars``, ``error``; ``split.mode`` also ``mode`` and ``reason``,
``split.index`` ``seconds``, ``rewrite.unparsed`` (the chat node's follow-up rewrite) ``error``,
``split.reading_ahead`` ``parts`` (leaves planned so far, with
``done``/``total`` the characters planned of the text's), ``analysis.more`` ``count``, ``analysis.unsupported_quotes``
``count`` and ``quotes`` (the quotes not found in the part), ``analysis.unparsed`` ``reply``
(the start of the reply that could not be read), ``analysis.focused`` ``parts``
and ``skipped``; ``progress.parent`` ``index`` and ``total`` (of the part a nested level
reads, one per level, joined with " > " in front of the level's messages); ``retry.*``
``seconds`` (the wait, "1-2" when the policy adds jitter), ``reason``, ``attempt`` (the next)
and ``attempts`` (the most), ``retry.part`` also ``index`` and ``total``. Unknown fields are left as written.

Plurals: a number field followed by ``:singular|plural`` is the word for that number,
``{total} {total:part|parts}`` gives "1 part" and "5 parts" (English rule: the first form
for 1, the second otherwise). Other number formats (``{chars:,}``) work as in ``str.format``.

The ``answer.*`` keys are not progress events but the notes the final answer text
carries when the document was not read in full (see :mod:`rlm_graph.coverage`):
``answer.failed``, ``answer.skipped``, ``answer.unparsed`` (replies that could not be read,
even when asked again), ``answer.all_nothing_but_index`` (every reading said "nothing" where
a search finds the question's terms) and ``answer.truncated`` take ``count``,
``spans`` (character ranges, merged, at most five then ``answer.more_spans``) and
``share`` (of the document, as a percentage); ``answer.focused_incomplete`` and
``answer.focused_complete`` take ``read``, ``total`` and ``unread``;
``answer.not_found_in_read`` replaces ``no_answer_message`` when nothing relevant
was found but some of the text was not read. An empty template drops its note."""


class Count(int):
    """A number in a message template: ``{n:part|parts}`` picks the word for it.

    Any other format spec is an ``int``'s, so ``{n}`` and ``{n:,}`` read as before.
    """

    def __format__(self, spec: str) -> str:
        if "|" in spec:
            singular, plural = spec.split("|", 1)
            return singular if self == 1 else plural
        return int.__format__(self, spec)


class _Unknown:
    """A field no value was given for: it stays in the message as written."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __format__(self, spec: str) -> str:
        return "{" + self.name + (":" + spec if spec else "") + "}"


class _KeepUnknown(dict[str, Any]):
    def __missing__(self, key: str) -> _Unknown:
        return _Unknown(key)


def format_message(templates: Mapping[str, str], key: str, **fields: Any) -> str:
    """Fill the message template ``key``.

    Args:
        templates: Templates by key; keys missing here use the English default.
        key: Template key such as ``"analysis.done"``.
        **fields: Values for the template.

    Returns:
        The message text.
    """
    template = templates.get(key) or DEFAULT_PROGRESS_MESSAGES.get(key, key)
    values = {
        name: Count(value) if isinstance(value, int) and not isinstance(value, bool) else value
        for name, value in fields.items()
    }
    try:
        return template.format_map(_KeepUnknown(values))
    except (ValueError, IndexError):
        # A malformed user template must not break the run; show it as written.
        return template


class ProgressWriter:
    """Writes progress events of one invocation to LangGraph's custom stream."""

    def __init__(
        self,
        templates: Mapping[str, str],
        depth: int,
        scope: tuple[int, int],
        path: Sequence[tuple[int, int]] = (),
    ) -> None:
        self._templates = templates
        self._depth = depth
        self._scope = [scope[0], scope[1]]
        self._path = [[index, total] for index, total in path]
        # Made once per writer: every message of a nested level starts with it.
        self._prefix = "".join(
            format_message(templates, "progress.parent", index=index, total=total) + " > " for index, total in path
        )
        self._write = get_stream_writer()

    def progress(
        self,
        stage: Stage,
        status: Status,
        key: str,
        *,
        done: int = 0,
        total: int = 0,
        span: tuple[int, int] | None = None,
        leaves: tuple[int, int] | None = None,
        **fields: Any,
    ) -> None:
        """Write one progress event.

        Args:
            stage: Pipeline stage.
            status: What happened.
            key: Message template key.
            done: Units of the stage finished in this invocation.
            total: Units of the stage in this invocation.
            span: Character span of the part concerned.
            leaves: Run-wide ``(leaves read, leaves planned)``, all depths; left out when
                nothing is planned yet.
            **fields: Extra template fields.
        """
        message = format_message(
            self._templates,
            key,
            depth=self._depth,
            done=done,
            total=total,
            start=span[0] if span else self._scope[0],
            end=span[1] if span else self._scope[1],
            **fields,
        )
        event: ProgressEvent = {
            "type": "progress",
            "stage": stage,
            "status": status,
            "message": self._prefix + message,
            "depth": self._depth,
            "done": done,
            "total": total,
            "span": [span[0], span[1]] if span else None,
            "scope": list(self._scope),
            "path": [list(step) for step in self._path],
        }
        if leaves is not None and leaves[1]:
            event["leaves_done"], event["leaves_total"] = leaves
        self._write(event)

    def usage(self, usage: Usage) -> None:
        """Write the run's usage event.

        Args:
            usage: Usage of the run, nested levels included.
        """
        event: dict[str, Any] = {"type": "usage", "depth": self._depth, "scope": list(self._scope)}
        # The same keys as the run's output: every counter, then what this run has of the rest.
        event |= {key: usage.get(key, 0) for key in USAGE_COUNTERS}
        event |= {key: value for key, value in usage.items() if key not in event}
        self._write(event)

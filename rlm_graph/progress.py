"""Progress message templates and the event writer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langgraph.config import get_stream_writer

from rlm_graph.state import ProgressEvent, Stage, Status, Usage, UsageEvent

DEFAULT_PROGRESS_MESSAGES: Mapping[str, str] = {
    "check.started": "Measuring the text ({chars} characters)",
    "check.fits": "The text fits in one model call",
    "check.too_long": "The text is too long for one model call; splitting it",
    "check.empty": "The document is empty",
    "split.started": "Splitting the text into parts",
    "split.reading_ahead": (
        "Planned {parts} parts ({done} of {total} characters); reading them while the rest is planned"
    ),
    "split.done": "Split into {total} parts",
    "split.skipped": "Skipping characters {start}-{end}: {error}",
    "analysis.processing": "Reading part {index} of {total}",
    "analysis.recursing": "Part {index} of {total} is still too long; splitting it further",
    "analysis.done": "Read {done} of {total} parts",
    "analysis.cached": "Part {index} of {total} came from the cache",
    "analysis.failed": "Part {index} of {total} could not be read: {error}",
    "analysis.unsupported_quotes": "Part {index} of {total}: {count} quote(s) could not be found in the part",
    "analysis.unparsed": "Part {index} of {total}: the model's reply could not be read, even when asked again",
    "analysis.escalated": "Part {index} of {total} was unclear to the small model; the large model reads it again",
    "analysis.more": "Reading {count} more parts, most relevant first",
    "analysis.focused": "Read the {done} most relevant of {parts} parts; the other {skipped} were not read",
    "split.mode": "Reading mode: {mode} ({reason})",
    "split.index": "Relevance index built in {seconds}s",
    "split.index_reused": "Relevance index reused from an earlier question",
    "synthesis.started": "Combining {total} findings",
    "synthesis.processing": "Combined {done} of {total} groups of findings",
    "synthesis.done": "Answer ready",
    "direct.started": "Answering from the whole text",
    "direct.done": "Answer ready",
    "rewrite.unparsed": "Could not read the rewritten follow-up ({error}); answering the question as you wrote it",
    # Notes the final answer carries when the document was not read in full (rlm_graph.coverage).
    # An empty template drops its note.
    "answer.not_found_in_read": "Nothing relevant to the question was found in the parts that were read.",
    "answer.failed": (
        "{count} part(s) of the document could not be read (characters {spans}, {share} of the text), "
        "so the answer does not cover them."
    ),
    "answer.skipped": (
        "{count} part(s) of the document were not read, to stay within the budget (characters {spans}, "
        "{share} of the text), so the answer does not cover them."
    ),
    "answer.unparsed": (
        "The model's replies about {count} part(s) of the document could not be read, even when asked "
        "again (characters {spans}, {share} of the text), so the answer does not cover them."
    ),
    "answer.all_nothing_but_index": (
        "Every part read was reported as holding nothing relevant, yet a search of the text finds the "
        "question's terms in it (characters {spans}): the reading may have missed them."
    ),
    "answer.truncated": (
        "{count} finding(s) were too long to combine and were shortened (from characters {spans}), "
        "so some details may be missing."
    ),
    "answer.focused_incomplete": (
        "Read {read} of {total} parts, the most relevant; the other {unread} were not read, "
        "so the answer may be incomplete."
    ),
    "answer.focused_complete": "Read {read} of {total} parts, the most relevant; the other {unread} were not needed.",
    "answer.more_spans": "{spans} and {more} more",
}
"""Message templates by key. Fields: ``depth``, ``done``, ``total``, ``index``,
``start``, ``end``, ``chars``, ``error``; ``split.mode`` also ``mode`` and ``reason``,
``split.index`` ``seconds``, ``rewrite.unparsed`` (the chat node's follow-up rewrite) ``error``,
``split.reading_ahead`` ``parts`` (leaves planned so far, with
``done``/``total`` the characters planned of the text's), ``analysis.more`` ``count``, ``analysis.unsupported_quotes``
``count`` and ``quotes`` (the quotes not found in the part), ``analysis.unparsed`` ``reply``
(the start of the reply that could not be read), ``analysis.focused`` ``parts``
and ``skipped``. Unknown fields are left as written.

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


class _KeepUnknown(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


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
    try:
        return template.format_map(_KeepUnknown(fields))
    except (ValueError, IndexError):
        # A malformed user template must not break the run; show it as written.
        return template


class ProgressWriter:
    """Writes progress events of one invocation to LangGraph's custom stream."""

    def __init__(self, templates: Mapping[str, str], depth: int, scope: tuple[int, int]) -> None:
        self._templates = templates
        self._depth = depth
        self._scope = [scope[0], scope[1]]
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
            "message": message,
            "depth": self._depth,
            "done": done,
            "total": total,
            "span": [span[0], span[1]] if span else None,
            "scope": list(self._scope),
        }
        if leaves is not None and leaves[1]:
            event["leaves_done"], event["leaves_total"] = leaves
        self._write(event)

    def usage(self, usage: Usage) -> None:
        """Write the invocation's usage event.

        Args:
            usage: Usage of this invocation, nested ones included.
        """
        event: UsageEvent = {
            "type": "usage",
            "depth": self._depth,
            "scope": list(self._scope),
            "llm_calls": usage.get("llm_calls", 0),
            "input_tokens": usage.get("input_tokens", 0),
            "output_tokens": usage.get("output_tokens", 0),
            "total_tokens": usage.get("total_tokens", 0),
            "failed_parts": usage.get("failed_parts", 0),
            "max_depth": usage.get("max_depth", 0),
        }
        # Relay and focused-reading figures appear only when the run produced them.
        for key in (
            "by_model",
            "large_model_share",
            "cost",
            "escalated_parts",
            "parts_read",
            "parts_total",
            "parts_unread",
            "stopped_early",
            "parts_skipped",
            "findings_truncated",
            "cached_calls",
            "cached_parts",
            "unsupported_quotes",
        ):
            if key in usage:
                event[key] = usage[key]  # type: ignore[literal-required]
        self._write(event)

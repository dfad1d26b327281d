"""Progress events written to LangGraph's custom stream (``stream_mode="custom"``)."""

from typing import Any, Literal, NotRequired

from typing_extensions import TypedDict

Stage = Literal["check", "split", "analysis", "synthesis", "direct", "navigate", "history", "rewrite"]
Status = Literal["started", "processing", "done", "failed", "cached", "retrying"]


class ProgressEvent(TypedDict):
    """One progress update.

    ``done``/``total`` count the units of work of ``stage`` inside one graph
    invocation: parts read for ``analysis``, findings combined for ``synthesis``.
    Nested invocations (one per part that was still too large) report their own
    counts with ``depth`` one higher; ``scope`` is the character span of the text
    the emitting invocation works on, so a UI can keep one bar per
    ``(depth, scope)``. For one overall bar use ``leaves_done / leaves_total`` of the
    ``analysis`` events: they count reading calls across all depths.
    """

    type: Literal["progress"]
    stage: Stage
    status: Status
    message: str
    depth: int
    done: int
    total: int
    span: list[int] | None
    """``[start, end]`` character offsets of the part concerned, or ``None``."""
    scope: list[int]
    """``[start, end]`` character offsets of the emitting invocation's text."""
    path: list[list[int]]
    """Where the emitting invocation sits: ``[index, total]`` of the part each level above it
    handed down, outermost first; ``[]`` at depth 0. A nested level's ``message`` starts with
    it, in words ("Part 3 of 8 > Read 2 of 5 parts")."""
    leaves_done: NotRequired[int]
    """``analysis`` events: reading calls (leaves) finished or failed so far in the whole
    run, all depths. Present once the top-level split has planned the run."""
    leaves_total: NotRequired[int]
    """``analysis`` events: reading calls the run's plan sends, all depths (in focused
    mode, those sent so far). ``leaves_done / leaves_total`` is the run's reading progress."""


class UsageEvent(TypedDict):
    """Usage of the run, written once, last, at depth 0 (nested levels write none).

    It holds the same keys as the run's ``usage`` output: every counter of
    ``rlm_graph.state.USAGE_COUNTERS`` (0 when nothing happened), and the others when
    the run has them.
    """

    type: Literal["usage"]
    depth: int
    scope: list[int]
    llm_calls: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    failed_parts: int
    max_depth: int
    cached_calls: int
    """Calls answered from the reply cache (not in ``llm_calls``)."""
    cached_parts: int
    unsupported_quotes: int
    """Readers' quotes that could not be found in the part they read (not citations)."""
    unparsed_replies: int
    """Replies that could not be read in the expected form (see ``Usage.unparsed_replies``)."""
    parts_skipped: int
    findings_truncated: int
    by_model: NotRequired[dict[str, dict[str, Any]]]
    """Per model role (``"model"``, ``"large_model"``): ``llm_calls``, ``input_tokens``,
    ``output_tokens`` and, with prices, ``cost``."""
    large_model_share: NotRequired[float]
    cost: NotRequired[float]
    escalated_parts: NotRequired[int]
    parts_read: NotRequired[int]
    parts_total: NotRequired[int]
    parts_unread: NotRequired[int]
    stopped_early: NotRequired[int]
    cached_input_tokens: NotRequired[int]
    chars_read: NotRequired[int]


class AnswerRestartedEvent(TypedDict):
    """The answer streamed so far under ``message_id`` is void: drop it and show what follows.

    Written by the chat node (``create_document_node``) before the first token of a call
    that writes the answer again (the call streaming it failed midway and was retried, or
    its reply could not be read and a corrective call writes it), or before the whole
    answer when it is not what was streamed. ``message`` says which. The stored message
    holds only the new text.
    """

    type: Literal["answer.restarted"]
    message_id: str
    """Id of the streamed ``AIMessageChunk`` s (and of the stored ``AIMessage``)."""
    discarded: int
    """Characters of that message the UI had been sent and must drop."""
    message: str
    """What happened, for a status line."""

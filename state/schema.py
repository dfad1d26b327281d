"""Graph state, input/output schemas and the per-part payload."""

from typing import Annotated, Any, NotRequired

from typing_extensions import TypedDict


class Citation(TypedDict):
    """Character offsets ``[start, end)`` of a cited span of the root document."""

    start: int
    end: int


class PartError(TypedDict):
    """A span of the document that could not be read, and why."""

    start: int
    end: int
    error: str


class Usage(TypedDict, total=False):
    """Model usage, summed over every call of a run (all depths)."""

    llm_calls: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    failed_parts: int
    max_depth: int


RESET_USAGE = "_reset"
"""Key of an update that replaces the accumulated usage instead of adding to it."""


def merge_usage(left: Usage | None, right: Usage | None) -> Usage:
    """Reducer for ``usage``: sums the counters, keeps the deepest ``max_depth``.

    An update holding the ``RESET_USAGE`` key replaces the total, so a new
    question on the same thread starts from zero.

    Args:
        left: Usage accumulated so far.
        right: Usage to add.

    Returns:
        A new usage dict.
    """
    right = right or {}
    if RESET_USAGE in right:
        return {key: value for key, value in right.items() if key != RESET_USAGE}  # type: ignore[return-value]
    merged: dict[str, int] = dict(left or {})
    for key, value in right.items():
        if key == "max_depth":
            merged[key] = max(merged.get(key, 0), value)
        else:
            merged[key] = merged.get(key, 0) + value
    return merged  # type: ignore[return-value]


def accumulate(left: list[Any] | None, right: list[Any] | None) -> list[Any]:
    """Reducer for lists gathered from parallel branches; ``None`` empties the list.

    Args:
        left: Items so far.
        right: Items to append, or ``None`` to start over.

    Returns:
        The new list.
    """
    if right is None:
        return []
    return [*(left or []), *right]


class Finding(TypedDict):
    """What one part of the document says about the question."""

    start: int
    end: int
    text: str
    citations: list[Citation]
    run_key: str
    """Run that computed it; a different key means the value came from the cache."""


class Budget(TypedDict):
    """Token budgets of one invocation (they depend on the question)."""

    part_tokens: int
    """Most document tokens one reading call may hold."""
    fanout: int
    """Most parts per level, so that their findings fit one synthesis call."""


class PlannedPart(TypedDict):
    """A part chosen by ``split``, in root-document offsets."""

    start: int
    end: int
    tokens: int
    fits: bool


class RLMInput(TypedDict):
    """What a caller passes in."""

    document: str
    question: str


class RLMOutput(TypedDict):
    """What a caller gets back."""

    answer: str
    citations: list[Citation]
    usage: Usage
    errors: list[PartError]


class RLMState(TypedDict):
    """Internal state of one invocation (one level of the recursion)."""

    document: str
    question: str
    run_key: NotRequired[str]
    depth: NotRequired[int]
    offset: NotRequired[int]
    chars: NotRequired[int]
    """Length of ``document``; ``split`` empties ``document`` once the parts are sent."""
    budget: NotRequired[Budget]
    route: NotRequired[str]
    parts: NotRequired[list[PlannedPart]]
    findings: Annotated[list[Finding], accumulate]
    errors: Annotated[list[PartError], accumulate]
    usage: Annotated[Usage, merge_usage]
    answer: NotRequired[str]
    citations: NotRequired[list[Citation]]


class ChunkTask(TypedDict):
    """Payload that ``split`` sends to each ``process_chunk`` branch."""

    question: str
    text: NotRequired[str]
    """The part's text, carried only by checkpointed runs (a resumed worker needs it);
    other runs slice it from the run's one shared copy when the part is read."""
    start: int
    """Offset of the part in the root document."""
    end: int
    tokens: int
    """Token count of the part (the sum of its leaves' counts)."""
    fits: bool
    """Whether the part fits one reading call or needs a nested invocation."""
    leaves: NotRequired[list[list[int]]]
    """For a nested part: its reading-call-sized leaves, ``[start, end, tokens]`` each."""
    index: int
    total: int
    depth: int
    scope: list[int]
    run_key: str

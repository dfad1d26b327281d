"""Graph state, input/output schemas and the per-part payload."""

from typing import Annotated, Any, Literal, NotRequired

from langgraph.types import Overwrite
from typing_extensions import TypedDict


class PartRange(TypedDict):
    """Character offsets ``[start, end)`` of the part a quote was read from."""

    start: int
    end: int


class TextRange(TypedDict):
    """Character offsets ``[start, end)`` into a text (the document, or the answer)."""

    start: int
    end: int


class Sentence(TypedDict):
    """A sentence of the document: ``document[start:end] == text``."""

    start: int
    end: int
    text: str


class Citation(TypedDict):
    """Character offsets ``[start, end)`` of a cited span of the root document.

    Two kinds, told apart by ``kind``:

    - ``"quote"``: a reader's supporting quote, located in its part. ``start``/``end`` are the
      passage itself, ``quote`` is ``document[start:end]``, ``part`` the range of the part it was
      read from.
    - ``"part"``: no quote could be located (the reader quoted nothing, or nothing it quoted is
      in the text, or the answer came from one call over the whole text). ``start``/``end`` are
      the whole part, which may be tens of thousands of characters; ``sentence`` is the part's
      sentence nearest to what the reader reported, a pointer for the eye, not a quote.

    ``kind`` is absent only in results made before it existed: there, a citation with a
    ``quote`` is quote-level and one without is part-level. ``answer_spans`` links the
    citation to the answer (see :class:`RLMOutput`).
    """

    start: int
    end: int
    kind: NotRequired[Literal["quote", "part"]]
    quote: NotRequired[str]
    part: NotRequired[PartRange]
    sentence: NotRequired[Sentence]
    """Part-level only: the sentence of the part that best matches the reader's report (BM25 over
    the part's sentences); absent when no sentence shares a word with it."""
    answer_spans: NotRequired[list[TextRange]]
    """Final answer only: offsets into ``answer`` of the sentences that cite this span, in order.
    Empty when the answer does not say which of its sentences use it: a model that wrote no
    citation markers (every finding is then cited), a one-call answer, or navigate mode."""


class PartError(TypedDict):
    """A span of the document that could not be read (or was cut short), and why."""

    start: int
    end: int
    error: str
    kind: NotRequired[Literal["failed", "skipped", "truncated", "unparsed"]]
    """``"failed"`` (also when absent): the span could not be read. ``"skipped"``: not read,
    to stay within the budget (``on_budget="partial"``). ``"truncated"``: read, but its finding
    was shortened to fit a synthesis call. ``"unparsed"``: the model replied, twice, in a form
    that could not be read (the reply's start is in ``reply``). The final answer's note is built
    from these."""
    reply: NotRequired[str]
    """``"unparsed"`` only: the first 200 characters of the reply that could not be read."""


class ModelUsage(TypedDict, total=False):
    """Usage of one of the run's models (``"model"`` or ``"large_model"``)."""

    llm_calls: int
    input_tokens: int
    output_tokens: int
    cost: float
    """Only when prices were given: input and output tokens at their price per million
    (cached input tokens at the cached-input price)."""
    cached_input_tokens: int
    """Input tokens the provider read from its prompt cache (part of ``input_tokens``)."""
    cached_calls: int
    """Calls of this model answered from the reply cache (not in ``llm_calls``)."""


class Usage(TypedDict, total=False):
    """Model usage, summed over every call of a run (all depths)."""

    llm_calls: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cached_input_tokens: int
    """Input tokens the provider served from its prompt cache (part of ``input_tokens``,
    billed at a discount); only when the provider reports them."""
    failed_parts: int
    max_depth: int
    by_model: dict[str, ModelUsage]
    """Calls and tokens per model role: ``"model"`` and, with relay, ``"large_model"``."""
    large_model_share: float
    """Share of all tokens (input and output) that went through ``large_model``; derived."""
    cost: float
    """Sum of ``by_model`` costs, only when prices were given; derived."""
    escalated_parts: int
    """Parts re-read by ``large_model`` after a low-confidence small-model reading."""
    parts_read: int
    """Top-level parts sent to reading (focused mode reads fewer than ``parts_total``)."""
    parts_total: int
    """Top-level parts the document was split into."""
    parts_unread: int
    """Focused reading: top-level parts never read (the answer text says so too)."""
    stopped_early: int
    """Focused reading: 1 when reading stopped at ``max_focused_parts`` before the synthesis
    said the answer was complete (summed over the questions of a chat thread)."""
    parts_skipped: int
    """Spans not read to stay within the budget (``on_budget="partial"``), all levels."""
    findings_truncated: int
    """Findings shortened to fit a synthesis call, all levels."""
    cached_calls: int
    """Model calls answered from the reply cache; not counted in ``llm_calls`` or tokens."""
    cached_parts: int
    """Parts (at any depth) whose reading came entirely from the reply cache."""
    unsupported_quotes: int
    """Quotes given by readers that could not be found in the part they read (not citations)."""
    unparsed_replies: int
    """Model replies that could not be read in the expected form, even after one corrective
    retry (each also an ``errors`` entry of kind ``"unparsed"``)."""
    chars_read: int
    """Navigate mode: characters of the document a reader (``ask``, ``ask_all``) or the root
    model (``peek``) read; the answer says so when it is not all of the text."""
    root_replies_repaired: int
    """Navigate mode: root-model replies without a tool call that were read as the calls they
    wrote as text (JSON), or answered with tool calls after one reminder."""


USAGE_COUNTERS: tuple[str, ...] = (
    "llm_calls",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "failed_parts",
    "max_depth",
    "cached_calls",
    "cached_parts",
    "unsupported_quotes",
    "unparsed_replies",
    "parts_skipped",
    "findings_truncated",
)
"""The counters every run's ``usage`` holds, 0 when nothing happened (``failed_parts: 0``),
so callers read them without ``.get``. The others appear only when the run has them:
``by_model`` (once a model was called), ``cached_input_tokens`` (when the provider reports
them), relay's ``large_model_share``, ``cost`` and ``escalated_parts``, ``parts_read``,
``parts_total``, ``parts_unread`` and ``stopped_early`` (once the document was split),
navigate's ``chars_read``."""


def zero_usage(depth: int = 0) -> Usage:
    """A usage with every counter of :data:`USAGE_COUNTERS` at 0 (``max_depth`` at ``depth``).

    Args:
        depth: The level's depth.

    Returns:
        The usage.
    """
    usage: dict[str, int] = dict.fromkeys(USAGE_COUNTERS, 0)
    usage["max_depth"] = depth
    return usage  # type: ignore[return-value]


def reset(value: Any) -> Overwrite:
    """An update that replaces an accumulated value (``findings``, ``errors``, ``usage``) instead of adding to it.

    The one reset convention of the state: LangGraph's ``Overwrite`` bypasses the
    reducer, so a new question on the same thread starts clean.

    Args:
        value: The new value.

    Returns:
        The update value.
    """
    return Overwrite(value)

_DERIVED = ("large_model_share", "cost")


def _merge_by_model(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    merged = {role: dict(counts) for role, counts in left.items()}
    for role, counts in right.items():
        target = merged.setdefault(role, {})
        for key, value in counts.items():
            target[key] = target.get(key, 0) + value
    return merged


def _derive(usage: dict[str, Any]) -> None:
    """Recompute the fields derived from ``by_model``, so they stay right after any merge."""
    by_model = usage.get("by_model")
    if not by_model:
        return
    tokens = {role: c.get("input_tokens", 0) + c.get("output_tokens", 0) for role, c in by_model.items()}
    total = sum(tokens.values())
    usage["large_model_share"] = tokens.get("large_model", 0) / total if total else 0.0
    costs = [c["cost"] for c in by_model.values() if "cost" in c]
    if costs:
        usage["cost"] = sum(costs)


def merge_usage(left: Usage | None, right: Usage | None) -> Usage:
    """Reducer for ``usage``: sums the counters, keeps the deepest ``max_depth``.

    ``by_model`` is summed per model; ``large_model_share`` and ``cost`` are
    recomputed from it, so parallel branches and nested depths merge exactly.

    A new question on the same thread starts from zero through :func:`reset`.

    Args:
        left: Usage accumulated so far.
        right: Usage to add.

    Returns:
        A new usage dict.
    """
    right = right or {}
    merged: dict[str, Any] = dict(left or {})
    for key, value in right.items():
        if key == "max_depth":
            merged[key] = max(merged.get(key, 0), value)
        elif key == "by_model":
            merged[key] = _merge_by_model(merged.get(key) or {}, value)
        elif key not in _DERIVED:
            merged[key] = merged.get(key, 0) + value
    _derive(merged)
    return merged  # type: ignore[return-value]


def accumulate(left: list[Any] | None, right: list[Any] | None) -> list[Any]:
    """Reducer for lists gathered from parallel branches (start over with :func:`reset`).

    Args:
        left: Items so far.
        right: Items to append.

    Returns:
        The new list.
    """
    return [*(left or []), *(right or [])]


class Finding(TypedDict):
    """What one part of the document says about the question."""

    start: int
    end: int
    text: str
    citations: list[Citation]
    run_key: str
    """Run that read it."""


class CallLayout(TypedDict):
    """Token layout of one level's calls: part size and fan-out (they depend on the question)."""

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
    """What a caller gets back.

    ``answer`` is plain text, without citation markers. Each citation's ``answer_spans`` are
    character ranges of ``answer`` (code points, as Python counts) of the sentences that use
    it, so a surface can put a marker after each such sentence
    (:func:`rlm_graph.citations.mark_answer` writes ``[1]``, ``[2]``... as the CLI prints them).
    Notes appended after the answer (parts that could not be read) are never in a span.
    """

    answer: str
    citations: list[Citation]
    usage: Usage
    errors: list[PartError]


class RLMState(TypedDict):
    """Internal state of one invocation (one level of the recursion)."""

    pending: NotRequired[list[PlannedPart]]
    """Focused reading: parts not read yet, most relevant first (empty otherwise)."""
    focus_cap: NotRequired[int]
    """Focused reading: most parts to read once a relevant finding exists."""

    document: str
    question: str
    run_key: NotRequired[str]
    depth: NotRequired[int]
    offset: NotRequired[int]
    chars: NotRequired[int]
    """Length of ``document``; ``split`` empties ``document`` once the parts are sent."""
    budget: NotRequired[CallLayout]
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

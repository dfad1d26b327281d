"""Every option's range check, and the rule that a run's context overrides the build-time default.

``create_rlm_graph`` and :class:`rlm_graph.context.RLMContext` check their options
here, so a value is judged the same way whether it is given at build time or per run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from langchain_core.language_models import BaseChatModel

from rlm_graph.index_cache import IndexCache
from rlm_graph.retrieval import Retriever, default_retriever

__all__ = [
    "DEFAULT_PART_TOKENS",
    "MIN_PART_TOKENS",
    "MODES",
    "REPLY_FORMATS",
    "FocusOptions",
    "Mode",
    "check_build_options",
    "check_focus_options",
    "check_part_tokens",
    "check_relay_options",
    "check_reply_format",
    "check_run_options",
    "output_budget",
    "overridden",
    "planned_window",
    "wants_navigate",
]

T = TypeVar("T")

MIN_PART_TOKENS = 64
DEFAULT_PART_TOKENS = 16_384
"""Most document tokens per reading call unless ``part_tokens`` says otherwise.

Fitting the window is necessary, not sufficient: models read long prompts worse
("context rot"). RULER (Hsieh et al., 2024, "RULER: What's the Real Context Size of
Your Long-Context Language Models?") found that most models claiming 32K tokens or
more fall well below their 4K score by 32K-128K (GPT-4-1106: 96.6 at 4K, 93.2 at 32K,
81.2 at 128K; Llama 3.1 8B: 95.5, 87.4, 77.0; Mistral 7B: 93.6 at 4K, 75.4 at 32K),
while at 16K most stay within a few points of their 4K score. 16K keeps every read in
that range and still needs few calls: a 1M-token document is about 62 reads.
"""

Mode = Literal["full", "focused", "auto", "navigate"]
MODES: tuple[str, ...] = ("full", "focused", "auto", "navigate")


REPLY_FORMATS: tuple[str, ...] = ("auto", "structured", "text")


def check_reply_format(value: Any) -> str:
    """Validate a ``reply_format`` option (:mod:`rlm_graph.replies`).

    Args:
        value: The value given.

    Returns:
        The value.

    Raises:
        ValueError: If it is not ``"auto"``, ``"structured"`` or ``"text"``.
    """
    if value not in REPLY_FORMATS:
        msg = f"reply_format must be one of {list(REPLY_FORMATS)}, got {value!r}"
        raise ValueError(msg)
    return value


def wants_navigate(mode: object, depth: int) -> bool:
    """Whether a level navigates: only the top level, only when asked for (``auto`` never picks it)."""
    return depth == 0 and mode == "navigate"


def overridden(context: object | None, name: str, default: T) -> T:
    """The run's value of an option: the context's when it sets one, else the build-time default.

    Args:
        context: The run's :class:`rlm_graph.context.RLMContext`, or ``None``.
        name: The option (a field of both the context and the graph's settings).
        default: The build-time value.

    Returns:
        The value that governs this run.
    """
    value = getattr(context, name, None) if context is not None else None
    return default if value is None else value


def check_part_tokens(part_tokens: Any) -> int:
    """Validate a ``part_tokens`` option.

    Args:
        part_tokens: The value given.

    Returns:
        The value.

    Raises:
        ValueError: If it is not an int of at least ``MIN_PART_TOKENS``.
    """
    if isinstance(part_tokens, bool) or not isinstance(part_tokens, int) or part_tokens < MIN_PART_TOKENS:
        msg = (
            f"part_tokens must be an int of at least {MIN_PART_TOKENS} (document tokens per reading call; "
            f"{DEFAULT_PART_TOKENS} by default), got {part_tokens!r}"
        )
        raise ValueError(msg)
    return part_tokens


def check_run_options(
    *,
    max_concurrency: int | None = None,
    max_depth: int | None = None,
    max_llm_calls: int | None = None,
    max_input_tokens: int | None = None,
    on_budget: str | None = None,
    mode: str | None = None,
    max_focused_parts: int | float | None = None,
    part_tokens: int | None = None,
) -> None:
    """Validate the options a run may override; ``None`` means "not given" and is not checked.

    Raises:
        ValueError: If a value is out of range.
    """
    if max_concurrency is not None and max_concurrency < 1:
        msg = f"max_concurrency must be at least 1, got {max_concurrency}"
        raise ValueError(msg)
    for name, value in (("max_llm_calls", max_llm_calls), ("max_input_tokens", max_input_tokens)):
        if value is not None and value < 1:
            msg = f"{name} must be at least 1, got {value}"
            raise ValueError(msg)
    if on_budget not in (None, "error", "partial"):
        msg = f"on_budget must be 'error' or 'partial', got {on_budget!r}"
        raise ValueError(msg)
    if mode is not None or max_focused_parts is not None:
        check_focus_options(mode or "full", 0.2 if max_focused_parts is None else max_focused_parts)
    if part_tokens is not None:
        check_part_tokens(part_tokens)
    if max_depth is not None and max_depth < 0:
        msg = f"max_depth must be 0 or more, got {max_depth}"
        raise ValueError(msg)


def check_focus_options(mode: Any, max_focused_parts: Any) -> None:
    """Validate the focused-reading options of ``create_rlm_graph``.

    Raises:
        ValueError: If ``mode`` is unknown or ``max_focused_parts`` is out of range.
    """
    if mode not in MODES:
        msg = f"mode must be one of {list(MODES)}, got {mode!r}"
        raise ValueError(msg)
    if isinstance(max_focused_parts, bool) or not isinstance(max_focused_parts, int | float):
        msg = f"max_focused_parts must be a count (int >= 1) or a share (0 < float <= 1), got {max_focused_parts!r}"
        raise ValueError(msg)
    valid = max_focused_parts >= 1 if isinstance(max_focused_parts, int) else 0 < max_focused_parts <= 1
    if not valid:
        msg = f"max_focused_parts must be a count (int >= 1) or a share (0 < float <= 1), got {max_focused_parts!r}"
        raise ValueError(msg)


@dataclass(kw_only=True)
class FocusOptions:
    """Focused-reading options of one graph."""

    mode: Mode = "full"
    retriever: Retriever | None = None
    """``None``: a :class:`rlm_graph.retrieval.BM25Retriever`, made on first use."""
    max_focused_parts: int | float = 0.2
    """Parts to read at most once something relevant is found: a count, or a share of the parts."""
    index_cache: IndexCache = field(default_factory=IndexCache)

    def resolved_retriever(self) -> Retriever:
        """The retriever, making the default one on first use."""
        if self.retriever is None:
            self.retriever = default_retriever()
        return self.retriever


def check_relay_options(
    model: BaseChatModel,
    large_model: BaseChatModel | None,
    escalate_below: float,
    prices: Mapping[str, tuple[float, ...]] | None,
) -> dict[str, tuple[float, ...]] | None:
    """Validate the relay options of ``create_rlm_graph``.

    Args:
        model: The small (reading) model.
        large_model: The large model, or ``None`` for no relay.
        escalate_below: Confidence threshold, between 0 and 1.
        prices: Price per million input and output tokens by role, optionally with a third
            price per million cached input tokens.

    Returns:
        The prices as a plain dict of float tuples, or ``None``.

    Raises:
        TypeError: If ``large_model`` is not a chat model.
        ValueError: If the threshold or a price is out of range or a role is unknown.
    """
    if large_model is not None and not isinstance(large_model, BaseChatModel):
        msg = f"large_model must be a LangChain BaseChatModel, got {type(large_model).__name__}"
        raise TypeError(msg)
    if isinstance(escalate_below, bool) or not isinstance(escalate_below, int | float) or not 0 <= escalate_below <= 1:
        msg = (
            f"escalate_below must be a confidence between 0 and 1 (high = 0.9, medium = 0.6, low = 0.3, "
            f"cannot tell = 0), got {escalate_below!r}"
        )
        raise ValueError(msg)
    if prices is None:
        return None
    roles = {"model"} | ({"large_model"} if large_model is not None else set())
    if not isinstance(prices, Mapping) or set(prices) - roles:
        msg = (
            f"prices must map {sorted(roles)} to (input, output) or (input, output, cached_input) prices "
            "per million tokens, "
            f"e.g. prices={{'model': (0.15, 0.60), 'large_model': (2.50, 10.00)}}; got {prices!r}"
        )
        raise ValueError(msg)
    if roles - set(prices):
        msg = f"prices has no entry for {sorted(roles - set(prices))}: price every model, or pass none"
        raise ValueError(msg)
    checked: dict[str, tuple[float, ...]] = {}
    for role, pair in prices.items():
        try:
            values = tuple(float(value) for value in pair)
        except (TypeError, ValueError):
            values = ()
        if len(values) not in (2, 3):
            msg = (
                f"prices[{role!r}] must be two or three numbers per million tokens: (input, output) or "
                f"(input, output, cached_input), got {pair!r}"
            )
            raise ValueError(msg) from None
        if any(value < 0 for value in values):
            msg = f"prices[{role!r}] must not be negative, got {pair!r}"
            raise ValueError(msg)
        checked[role] = values
    return checked


def planned_window(model: BaseChatModel, large_model: BaseChatModel | None, context_window: int | None) -> int:
    """The window every call is planned for: the given one, or the model's profile, and the large model's if smaller.

    Raises:
        ValueError: If the window is unknown or smaller than 512 tokens.
    """
    if context_window is None:
        profile = getattr(model, "profile", None) or {}
        context_window = profile.get("max_input_tokens") if isinstance(profile, Mapping) else None
    if context_window is None:
        msg = (
            f"the context window of {type(model).__name__} is unknown (its profile has no "
            "'max_input_tokens'): pass it, e.g. create_rlm_graph(model, context_window=32768)"
        )
        raise ValueError(msg)
    if not isinstance(context_window, int) or context_window < 512:
        msg = f"context_window must be an int of at least 512 tokens, got {context_window!r}"
        raise ValueError(msg)
    if large_model is not None:
        large_profile = getattr(large_model, "profile", None) or {}
        large_window = large_profile.get("max_input_tokens") if isinstance(large_profile, Mapping) else None
        # Every prompt may go to either model (an escalation re-sends a reading as is),
        # so plan for the smaller window.
        if isinstance(large_window, int) and large_window >= 512:
            context_window = min(context_window, large_window)
    return context_window

def default_output_tokens(window: int) -> int:
    """Tokens reserved for a reply when none is given: an eighth of the window, between 256 and 2048."""
    return min(2048, max(256, window // 8))


def output_budget(window: int, max_output_tokens: int | None) -> int:
    """Tokens reserved for each reply: the given value, or an eighth of the window between 256 and 2048.

    Raises:
        ValueError: If it is not between 16 and a third of the window.
    """
    output_tokens = max_output_tokens if max_output_tokens is not None else default_output_tokens(window)
    if not 16 <= output_tokens <= window // 3:
        msg = f"max_output_tokens must be between 16 and a third of the window ({window // 3}), got {output_tokens}"
        raise ValueError(msg)
    return output_tokens


def check_build_options(
    *, max_fanout: int | None, chunk_overlap: int, index_cache_size: int, cache_ttl: int | None
) -> None:
    """Validate the options only ``create_rlm_graph`` takes.

    Raises:
        ValueError: If a value is out of range.
    """
    if not isinstance(index_cache_size, int) or index_cache_size < 1:
        msg = f"index_cache_size must be an int of at least 1, got {index_cache_size!r}"
        raise ValueError(msg)
    if max_fanout is not None and max_fanout < 2:
        msg = f"max_fanout must be at least 2, got {max_fanout}"
        raise ValueError(msg)
    if chunk_overlap < 0:
        msg = f"chunk_overlap must be 0 or more, got {chunk_overlap}"
        raise ValueError(msg)
    if cache_ttl is not None and (not isinstance(cache_ttl, int) or cache_ttl < 1):
        msg = f"cache_ttl must be None or an int of at least 1 second, got {cache_ttl!r}"
        raise ValueError(msg)

"""Relay: a small model reads the parts, the large model helps where it is unsure.

After RelayLLM (2026): the small model does most of the work and hands a part to
the large model only when its own reading signals low confidence. The signal has
to work with plain-text models, so the reading prompt asks for a last line such as
``CONFIDENCE: low``; it is parsed leniently, and a reply without it counts as
confident (a model that ignores the request never escalates, it does not fail).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping

from langchain_core.language_models import BaseChatModel

from rlm_graph.errors import BudgetExceededError
from rlm_graph.settings import CallResult, Invocation, ModelCall
from rlm_graph.state import merge_usage

CONFIDENCE_INSTRUCTION = (
    "\n\nFinally, on a line of its own at the very end, rate how sure you are: write exactly "
    "CONFIDENCE: high, CONFIDENCE: medium or CONFIDENCE: low. Write low if the part is unclear "
    "to you or you cannot tell whether it answers the question."
)
"""Appended to the reading prompt when a ``large_model`` is set."""

_LEVELS: Mapping[str, float] = {
    "high": 0.9,
    "very high": 1.0,
    "medium": 0.6,
    "moderate": 0.6,
    "low": 0.3,
    "very low": 0.1,
    "none": 0.0,
    "unknown": 0.0,
    "unsure": 0.0,
    "uncertain": 0.0,
    "cannot tell": 0.0,
    "can't tell": 0.0,
    "cant tell": 0.0,
}
_WORDS = "|".join(sorted((re.escape(word) for word in _LEVELS), key=len, reverse=True))
# One line holding the marker, with whatever Markdown decoration a model adds around it.
_MARKER = re.compile(
    r"^[ \t>*_`#\-\[(]*confidence(?:[ \t]+level)?[ \t*_`]*[:=\-][ \t*_`\"']*"
    rf"(?P<value>{_WORDS}|\d{{1,3}}(?:\.\d+)?[ \t]*%?)"
    r"[ \t*_`\"'.)\]!]*(?:\([^)\n]*\))?[ \t.]*$",
    re.IGNORECASE | re.MULTILINE,
)
_BARE_CANNOT_TELL = re.compile(r"^[ \t*_`]*(?:cannot[ _]tell|can't tell)[ \t*_`.!]*$", re.IGNORECASE | re.MULTILINE)


def _value(raw: str) -> float | None:
    word = " ".join(raw.lower().split())
    if word in _LEVELS:
        return _LEVELS[word]
    number = float(word.rstrip("%").strip())
    if word.endswith("%") or number > 1:
        number /= 100
    return number if 0 <= number <= 1 else None


def split_confidence(text: str) -> tuple[str, float | None]:
    """Separate a reading from its confidence marker.

    Accepts ``CONFIDENCE: low`` in any case, with Markdown around it (``**Confidence:** Low``),
    ``high``/``medium``/``low``/``cannot tell`` and the like, or a number (``0.4``,
    ``40%``). The last marker wins; a final line ``CANNOT TELL`` counts as one too.

    Args:
        text: The reader's reply.

    Returns:
        The reply without the marker line (stripped), and the confidence between 0
        and 1, or ``None`` when the reply states none.
    """
    matches = list(_MARKER.finditer(text))
    if matches:
        last = matches[-1]
        confidence = _value(last.group("value"))
        return (text[: last.start()] + text[last.end() :]).strip(), confidence
    bare = list(_BARE_CANNOT_TELL.finditer(text))
    if bare and not text[bare[-1].end() :].strip():
        return text[: bare[-1].start()].strip(), 0.0
    return text.strip(), None


def _needs_help(run: Invocation, small: CallResult) -> tuple[CallResult, bool]:
    text, confidence = split_confidence(small.text)
    result = CallResult(text=text, usage=small.usage)
    settings = run.settings
    escalate = settings.large_model is not None and confidence is not None and confidence < settings.escalate_below
    return result, escalate


def _budget_allows(run: Invocation, call: ModelCall) -> bool:
    # An escalation is a call the plan did not count: the run's ledger grants it only
    # while the plan plus escalations stay within budget.
    return run.resources.allow_unplanned(call.prompt_tokens)


def _escalated(small: CallResult, large: CallResult) -> CallResult:
    text, _ = split_confidence(large.text)
    return CallResult(text=text, usage=merge_usage(merge_usage(small.usage, large.usage), {"escalated_parts": 1}))


def read(run: Invocation, call: ModelCall, on_escalate: Callable[[], None]) -> CallResult:
    """Read one part with the small model, escalating to the large one when unsure (sync).

    Both calls are booked against the run's budgets. An escalation is extra to the
    plan that ``split`` checked, so it is made only while the plan plus escalations
    stay within budget; otherwise (or if the booking refuses it) the small model's
    reading is kept rather than losing the part.

    Args:
        run: The invocation.
        call: The reading prompt.
        on_escalate: Called just before the large model is asked (progress event).

    Returns:
        The reading without its confidence marker, with the usage of both calls.
    """
    small, escalate = _needs_help(run, run.call(call))
    if not escalate or not _budget_allows(run, call):
        return small
    on_escalate()
    try:
        large = run.call(dataclasses.replace(call, large=True))
    except BudgetExceededError:
        return small
    return _escalated(small, large)


async def aread(run: Invocation, call: ModelCall, on_escalate: Callable[[], None]) -> CallResult:
    """Async :func:`read`.

    Args:
        run: The invocation.
        call: The reading prompt.
        on_escalate: Called just before the large model is asked (progress event).

    Returns:
        The reading without its confidence marker, with the usage of both calls.
    """
    small, escalate = _needs_help(run, await run.acall(call))
    if not escalate or not _budget_allows(run, call):
        return small
    on_escalate()
    try:
        large = await run.acall(dataclasses.replace(call, large=True))
    except BudgetExceededError:
        return small
    return _escalated(small, large)


def check_relay_options(
    model: BaseChatModel,
    large_model: BaseChatModel | None,
    escalate_below: float,
    prices: Mapping[str, tuple[float, float]] | None,
) -> dict[str, tuple[float, float]] | None:
    """Validate the relay options of ``create_rlm_graph``.

    Args:
        model: The small (reading) model.
        large_model: The large model, or ``None`` for no relay.
        escalate_below: Confidence threshold, between 0 and 1.
        prices: Price per million input and output tokens by role.

    Returns:
        The prices as a plain dict of float pairs, or ``None``.

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
            f"prices must map {sorted(roles)} to (input, output) prices per million tokens, "
            f"e.g. prices={{'model': (0.15, 0.60), 'large_model': (2.50, 10.00)}}; got {prices!r}"
        )
        raise ValueError(msg)
    if roles - set(prices):
        msg = f"prices has no entry for {sorted(roles - set(prices))}: price every model, or pass none"
        raise ValueError(msg)
    checked: dict[str, tuple[float, float]] = {}
    for role, pair in prices.items():
        try:
            price_in, price_out = (float(value) for value in pair)
        except (TypeError, ValueError):
            msg = f"prices[{role!r}] must be two numbers (input, output) per million tokens, got {pair!r}"
            raise ValueError(msg) from None
        if price_in < 0 or price_out < 0:
            msg = f"prices[{role!r}] must not be negative, got {pair!r}"
            raise ValueError(msg)
        checked[role] = (price_in, price_out)
    return checked

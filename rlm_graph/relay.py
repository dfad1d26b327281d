"""Relay: a small model reads the parts, the large model helps where it is unsure.

After RelayLLM (2026): the small model does most of the work and hands a part to
the large model only when its own reading signals low confidence. The signal has
to work with plain-text models, so the reading prompt asks for a last line such as
``CONFIDENCE: low``. Only that line, as the reply's last non-empty line, is parsed,
and only when a ``large_model`` is set: without relay nothing is removed from a
reading, and a ``Confidence: 95%`` quoted from the document is content. A reply
without the line counts as confident (a model that ignores the request never
escalates, it does not fail).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Generator, Mapping
from typing import Any

from rlm_graph.calls import CallResult, ModelCall
from rlm_graph.errors import BudgetExceededError, EmptyReplyError
from rlm_graph.level import Level
from rlm_graph.state import merge_usage

CONFIDENCE_INSTRUCTION = (
    "\n\nFinally, on a line of its own at the very end, rate how sure you are: write exactly "
    "CONFIDENCE: high, CONFIDENCE: medium or CONFIDENCE: low. Write low if the part is unclear "
    "to you or you cannot tell whether it answers the question."
)
"""Appended to the reading prompt when a ``large_model`` is set."""

_LEVELS: Mapping[str, float] = {"high": 0.9, "medium": 0.6, "low": 0.3}
# Our own marker only, as the reply's last non-empty line: CONFIDENCE: high|medium|low, with
# whatever Markdown decoration a model adds around it (**Confidence:** High). "Confidence level:
# 95%" or a marker anywhere else is content (a quote from the document), never parsed.
_MARKER = re.compile(
    r"^[ \t>*_`#\-]*confidence[ \t*_`]*:[ \t*_`\"']*(?P<value>high|medium|low)[ \t*_`\"'.!]*$",
    re.IGNORECASE,
)


def split_confidence(text: str) -> tuple[str, float | None]:
    """Separate a reading from the confidence line that ``CONFIDENCE_INSTRUCTION`` asks for.

    Only the reply's last non-empty line is looked at, and only our own format
    counts: ``CONFIDENCE: high``, ``medium`` or ``low`` (any case, Markdown
    decoration around it allowed). Any other line, such as ``Confidence level: 95%``
    quoted from the document, stays in the reading.

    Args:
        text: The reader's reply.

    Returns:
        The reply without the marker line (stripped), and the confidence between 0
        and 1 (high 0.9, medium 0.6, low 0.3), or ``None`` when the last line is not a marker.
    """
    stripped = text.rstrip()
    head, _, last = stripped.rpartition("\n")
    marker = _MARKER.match(last.strip())
    if marker is None:
        return text.strip(), None
    return head.strip(), _LEVELS[marker.group("value").lower()]


def _needs_help(run: Level, small: CallResult) -> tuple[CallResult, bool]:
    if run.settings.large_model is None:
        # No relay: the prompt asked for no confidence line, so nothing in the reply is one.
        return small, False
    text, confidence = split_confidence(small.text)
    escalate = confidence is not None and confidence < run.settings.escalate_below
    if not text and not escalate:
        # The reply held only the marker: no reading at all, so retry it like an empty reply.
        msg = "the model replied with a confidence line only"
        raise EmptyReplyError(msg)
    return CallResult(text=text, usage=small.usage), escalate


def _budget_allows(run: Level, call: ModelCall) -> bool:
    # An escalation is a call the plan did not count: the run's ledger grants it only
    # while the plan plus escalations stay within budget.
    return run.resources.allow_unplanned(call.prompt_tokens)


def _escalated(small: CallResult, large: CallResult) -> CallResult:
    text, _ = split_confidence(large.text)
    if not text:
        msg = "the large model replied with a confidence line only"
        raise EmptyReplyError(msg)
    return CallResult(text=text, usage=merge_usage(merge_usage(small.usage, large.usage), {"escalated_parts": 1}))


def read(run: Level, call: ModelCall, on_escalate: Callable[[], None]) -> Generator[list[ModelCall], Any, CallResult]:
    """Read one part with the small model, escalating to the large one when unsure.

    Both calls are booked against the run's budgets. An escalation is extra to the
    plan that ``split`` checked, so it is made only while the plan plus escalations
    stay within budget; otherwise (or if the booking refuses it) the small model's
    reading is kept rather than losing the part.

    Args:
        run: The level.
        call: The reading prompt.
        on_escalate: Called just before the large model is asked (progress event).

    Yields:
        The small model's call, then maybe the large model's (see :data:`rlm_graph.calls.CallSteps`).

    Returns:
        The reading without its confidence marker, with the usage of both calls.
    """
    (first,) = yield [call]
    small, escalate = _needs_help(run, first)
    if not escalate or not _budget_allows(run, call):
        return small
    on_escalate()
    try:
        (large,) = yield [dataclasses.replace(call, large=True, name=f"{call.name} (escalated)", kind="escalate")]
    except BudgetExceededError:
        return small
    return _escalated(small, large)

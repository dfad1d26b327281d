"""Relay: a small model reads the parts, the large model helps where it is unsure.

After RelayLLM (2026): the small model does most of the work and hands a part to
the large model only when its own reading signals low confidence. The signal has
to work with plain-text models, so the reading prompt asks for a last line such as
``CONFIDENCE: low``. Only that line, as the reply's last non-empty line, is parsed,
and only when a ``large_model`` is set: without relay nothing is removed from a
reading, and a ``Confidence: 95%`` quoted from the document is content. A reply
without the line counts as confident (a model that ignores the request never
escalates, it does not fail); a line in our format whose value cannot be read is
asked again (:mod:`rlm_graph.replies`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Generator, Mapping
from typing import Any

from rlm_graph.calls import ModelCall
from rlm_graph.errors import BudgetExceededError
from rlm_graph.level import Level
from rlm_graph.prompts import CONFIDENCE_INSTRUCTION
from rlm_graph.replies import Reply, ReplyForm, Unreadable, ask
from rlm_graph.state import merge_usage

__all__ = ["CONFIDENCE_INSTRUCTION", "LEVELS", "read", "split_confidence"]



LEVELS: Mapping[str, float] = {"high": 0.9, "medium": 0.6, "low": 0.3}
"""Confidence by stated level."""
# Our own marker only, as the reply's last non-empty line: CONFIDENCE: high|medium|low, with
# whatever Markdown decoration a model adds around it (**Confidence:** High). "Confidence level:
# 95%" or a marker anywhere else is content (a quote from the document), never parsed.
_MARKER = re.compile(
    r"^[ \t>*_`#\-]*confidence[ \t*_`]*:[ \t*_`\"']*(?P<value>high|medium|low)[ \t*_`\"'.!]*$",
    re.IGNORECASE,
)
# Our marker as the instruction spells it (capitals, a colon) with a value that is none of
# ours ("CONFIDENCE: 80%", "CONFIDENCE: very sure"): the model meant to rate, and it cannot be read.
_OUR_MARKER_UNREADABLE = re.compile(r"^[ \t>*_`#\-]*CONFIDENCE[ \t*_`]*:")


def split_confidence(text: str) -> tuple[str, float | None] | Unreadable:
    """Separate a reading from the confidence line that ``CONFIDENCE_INSTRUCTION`` asks for.

    Only the reply's last non-empty line is looked at, and only our own format
    counts: ``CONFIDENCE: high``, ``medium`` or ``low`` (any case, Markdown
    decoration around it allowed). Any other line, such as ``Confidence level: 95%``
    quoted from the document, stays in the reading. A last line that is our marker
    in capitals with another value (``CONFIDENCE: 80%``) cannot be read: it is
    neither a rating nor content.

    Args:
        text: The reader's reply.

    Returns:
        The reply without the marker line (stripped), and the confidence between 0
        and 1 (high 0.9, medium 0.6, low 0.3), or ``None`` when the last line is not a
        marker; :class:`rlm_graph.replies.Unreadable` for an unreadable marker.
    """
    stripped = text.rstrip()
    head, _, last = stripped.rpartition("\n")
    marker = _MARKER.match(last.strip())
    if marker is None:
        if _OUR_MARKER_UNREADABLE.match(last.strip()):
            return Unreadable("its CONFIDENCE line says neither high, medium nor low")
        return text.strip(), None
    return head.strip(), LEVELS[marker.group("value").lower()]


def _budget_allows(run: Level, call: ModelCall) -> bool:
    # An escalation is a call the plan did not count: the run's ledger grants it only
    # while the plan plus escalations stay within budget.
    return run.resources.allow_unplanned(call.prompt_tokens)


def read(
    run: Level,
    call: Callable[[bool], ModelCall],
    on_escalate: Callable[[], None],
    form: ReplyForm[Any],
) -> Generator[list[ModelCall], Any, Reply[Any]]:
    """Read one part with the small model, escalating to the large one when unsure.

    Both calls are booked against the run's budgets and read strictly under ``form``
    (:func:`rlm_graph.replies.ask`). An escalation is extra to the plan that ``split``
    checked, so it is made only while the plan plus escalations stay within budget;
    otherwise (or if the booking refuses it, or the large model's reply cannot be read)
    the small model's reading is kept rather than losing the part.

    Args:
        run: The level.
        call: Builds the reading call for a format (``True``: structured).
        on_escalate: Called just before the large model is asked (progress event).
        form: The reading's form (:func:`rlm_graph.reply_forms.reading_form`).

    Yields:
        The small model's call, then maybe the large model's (see :data:`rlm_graph.calls.CallSteps`).

    Returns:
        The small model's reading, or the large model's with the usage of both. When the
        large model's reply could not be read, the small model's reading comes back with
        that reply as its ``side`` (counted and reported by the caller).
    """
    small = yield from ask(run, call, form)
    if run.settings.large_model is None or small.unparsed:
        return small
    confidence = small.value.confidence
    escalate = confidence is not None and confidence < run.settings.escalate_below
    if not escalate or not _budget_allows(run, call(False)):
        return small
    on_escalate()

    def escalated(structured: bool) -> ModelCall:
        first = call(structured)
        return dataclasses.replace(first, large=True, name=f"{first.name} (escalated)", kind="escalate")

    try:
        large = yield from ask(run, escalated, form)
    except BudgetExceededError:
        return small
    usage = merge_usage(merge_usage(small.cost, large.cost), {"escalated_parts": 1})
    if large.unparsed:
        # The small model's reading stands; the unreadable reply is still reported (its error).
        return dataclasses.replace(small, cost=usage, side=large)
    return dataclasses.replace(large, cost=usage)

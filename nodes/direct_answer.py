"""``direct_answer``: answer with one call when the whole text fits."""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import Runnable
from rlm_graph.nodes.entry import node_runnable
from rlm_graph.state import RLMState, merge_usage

from rlm_graph.calls import CallSteps, ModelCall
from rlm_graph.citations import part_citation
from rlm_graph.coverage import Coverage
from rlm_graph.level import Level
from rlm_graph.prompts import NO_RELEVANT_INFORMATION, neutralize_tags
from rlm_graph.replies import ask
from rlm_graph.reply_forms import ANSWER_FORM, reading_form
from rlm_graph.settings import Settings


def _steps(settings: Settings, run: Level, state: RLMState) -> CallSteps:
    document = state["document"]
    scope = (run.offset, run.offset + len(document))
    progress = run.writer(scope)
    if run.first_attempt:  # a retry was announced by its own event (_announce_retry)
        progress.progress("direct", "started", "direct.started", done=0, total=1, span=scope)
    text = neutralize_tags(document)

    def call(structured: bool) -> ModelCall:
        messages = settings.one_call_messages(text, state["question"], run.depth, scope, structured=structured)
        # A whole document in one call is the final answer: the large model's job under relay.
        count = settings.counter.count_messages(messages)
        return ModelCall(messages, count, large=True, name="answer", kind="answer", span=scope, streams=run.depth == 0)

    if run.depth == 0:
        # The final answer: a reply cut at max_tokens (or otherwise unreadable) is asked again once,
        # never shown as the answer; if it still cannot be read, the answer says so.
        answered = yield from ask(run, call(False), ANSWER_FORM)
        reply_text = NO_RELEVANT_INFORMATION if answered.value is None else answered.value
        errors = answered.errors(scope[0], scope[1], f"the answer from characters {scope[0]}-{scope[1]}")
        usage = answered.usage
    else:
        # Nested, the whole (sub)document is one part of a larger one: its reply is a reading.
        read = yield from ask(run, call, reading_form(settings.large_model is not None))
        reply_text = NO_RELEVANT_INFORMATION if read.value is None else read.value.text
        errors = read.errors(scope[0], scope[1], f"the model's reading of characters {scope[0]}-{scope[1]}")
        usage = read.usage
    coverage = Coverage(chars=len(document), errors=errors) if run.depth == 0 else None
    answer, citations = run.settle(reply_text, [{"start": scope[0], "end": scope[1], "kind": "part"}], coverage)
    if citations:
        # The whole text is the source; its sentence nearest the answer shows where to look.
        citations = [part_citation(document, scope[0], scope[1], reply_text)]
    progress.progress("direct", "done", "direct.done", done=1, total=1, span=scope)
    run.finish(progress, merge_usage(state.get("usage"), usage))
    return {"answer": answer, "citations": citations, "usage": usage, "errors": errors}


def _announce_retry(run: Level, state: RLMState, fields: dict[str, Any]) -> None:
    scope = (run.offset, run.offset + len(state["document"]))
    run.writer(scope).progress("direct", "retrying", "retry.answer", done=0, total=1, span=scope, **fields)


def make_direct_answer(settings: Settings) -> Runnable[RLMState, dict[str, Any]]:
    """Build the ``direct_answer`` node (sync and async).

    Args:
        settings: The graph's settings.

    Returns:
        The node runnable.
    """
    return node_runnable(
        "direct_answer", settings, lambda run, state: _steps(settings, run, state), on_retry=_announce_retry
    )

"""``direct_answer``: answer with one call when the whole text fits."""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import Runnable
from rlm_graph.nodes.entry import node_runnable
from rlm_graph.state import RLMState, merge_usage

from rlm_graph.calls import CallSteps, ModelCall
from rlm_graph.level import Level
from rlm_graph.prompts import neutralize_tags
from rlm_graph.settings import Settings


def _steps(settings: Settings, run: Level, state: RLMState) -> CallSteps:
    document = state["document"]
    scope = (run.offset, run.offset + len(document))
    progress = run.writer(scope)
    if run.first_attempt:  # a retry was announced by its own event (_announce_retry)
        progress.progress("direct", "started", "direct.started", done=0, total=1, span=scope)
    messages = settings.one_call_messages(neutralize_tags(document), state["question"], run.depth, scope)
    # A whole document in one call is the final answer: the large model's job under relay.
    count = settings.counter.count_messages(messages)
    call = ModelCall(messages, count, large=True, name="answer", kind="answer", span=scope, streams=run.depth == 0)
    (result,) = yield [call]
    answer, citations = run.settle(result.text, [{"start": scope[0], "end": scope[1]}])
    progress.progress("direct", "done", "direct.done", done=1, total=1, span=scope)
    run.finish(progress, merge_usage(state.get("usage"), result.usage))
    return {"answer": answer, "citations": citations, "usage": result.usage}


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

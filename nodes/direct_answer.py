"""``direct_answer``: answer with one call when the whole text fits."""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import Runnable, RunnableLambda
from rlm_graph.state import RLMState, merge_usage

from rlm_graph.progress import ProgressWriter
from rlm_graph.prompts import neutralize_tags
from rlm_graph.settings import CallResult, Invocation, ModelCall, Settings


def _prepare(settings: Settings, state: RLMState) -> tuple[Invocation, ProgressWriter, ModelCall]:
    run = Invocation.current(settings, state["run_key"])
    document = state["document"]
    scope = (run.offset, run.offset + len(document))
    progress = run.writer(scope)
    progress.progress("direct", "started", "direct.started", done=0, total=1, span=scope)
    messages = settings.one_call_messages(neutralize_tags(document), state["question"], run.depth, scope)
    # A whole document in one call is the final answer: the large model's job under relay.
    return run, progress, ModelCall(messages, settings.counter.count_messages(messages), large=True)


def _output(state: RLMState, run: Invocation, progress: ProgressWriter, result: CallResult) -> dict[str, Any]:
    scope = (run.offset, run.offset + len(state["document"]))
    answer, citations = run.settle(result.text, [{"start": scope[0], "end": scope[1]}])
    progress.progress("direct", "done", "direct.done", done=1, total=1, span=scope)
    run.finish(progress, merge_usage(state.get("usage"), result.usage))
    return {"answer": answer, "citations": citations, "usage": result.usage}


def make_direct_answer(settings: Settings) -> Runnable[RLMState, dict[str, Any]]:
    """Build the ``direct_answer`` node (sync and async).

    Args:
        settings: The graph's settings.

    Returns:
        The node runnable.
    """

    def direct_answer(state: RLMState) -> dict[str, Any]:
        run, progress, call = _prepare(settings, state)
        return _output(state, run, progress, run.call(call))

    async def adirect_answer(state: RLMState) -> dict[str, Any]:
        run, progress, call = _prepare(settings, state)
        return _output(state, run, progress, await run.acall(call))

    return RunnableLambda(direct_answer, afunc=adirect_answer, name="direct_answer")

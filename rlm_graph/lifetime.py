"""Run lifetime: the top-level invocation owns its run's shared resources.

A run's :class:`rlm_graph.runs.RunResources` (limiter, budget ledger and, without
a checkpointer, the whole document) live in a process-wide registry so that every
depth of the run finds them. LangGraph has no per-invocation "graph finished"
hook, and a run can end in many places: a node raising after its retries
(``DepthLimitError``, ``BudgetExceededError``, ``AllPartsFailedError``, a provider
error), a cancelled task, a cache hit that skips the answering node. So the
compiled graph's own entry points hold the run: a top-level ``stream``/``astream``
(which ``invoke``, ``ainvoke``, ``astream_events`` and a parent graph's call of
this graph all go through) gives the run a fresh key and releases it in
``finally``. Nested invocations (depth > 0) pass through and never release the
root's entry.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph

from rlm_graph.level import CONFIG_DEPTH, CONFIG_LEAVES, CONFIG_OFFSET, CONFIG_PATH, CONFIG_RUN_KEY
from rlm_graph.runs import release

__all__ = ["RLMGraph", "owning_runs"]


def _root_config(config: RunnableConfig | None) -> tuple[RunnableConfig | None, str | None]:
    """The config of a top-level invocation with its run key, or ``config`` as is when nested."""
    configurable = dict((config or {}).get("configurable") or {})
    if configurable.get(CONFIG_DEPTH):
        return config, None  # a nested level of a run that its root invocation owns
    run_key = uuid.uuid4().hex
    # Explicit values, so an ambient config (a caller's node) cannot make this run look nested.
    configurable.update(
        {CONFIG_RUN_KEY: run_key, CONFIG_DEPTH: 0, CONFIG_OFFSET: 0, CONFIG_LEAVES: None, CONFIG_PATH: []}
    )
    return {**(config or {}), "configurable": configurable}, run_key


class RLMGraph(CompiledStateGraph):
    """The compiled rlm graph: each top-level invocation releases its run however it ends."""

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        """``CompiledStateGraph.stream``, owning the run when top-level (see module docs)."""
        config, run_key = _root_config(config)
        try:
            yield from super().stream(input, config, **kwargs)
        finally:
            if run_key is not None:
                release(run_key)

    async def astream(  # type: ignore[override]
        self,
        input: Any,
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        """``CompiledStateGraph.astream``, owning the run when top-level (see module docs)."""
        config, run_key = _root_config(config)
        try:
            async for chunk in super().astream(input, config, **kwargs):
                yield chunk
        finally:
            if run_key is not None:
                release(run_key)


def owning_runs(graph: CompiledStateGraph) -> RLMGraph:
    """The same compiled graph as an :class:`RLMGraph` (made the way LangGraph's ``copy`` makes one).

    Args:
        graph: The graph ``StateGraph.compile`` returned.

    Returns:
        The graph whose top-level invocations own their runs.
    """
    attrs = {key: value for key, value in graph.__dict__.items() if key != "__orig_class__"}
    return RLMGraph(**attrs)

"""LangGraph's own cost of one nested invocation, with nodes that do nothing.

A graph of our shape (four nodes in a row, the third fanned out with ``Send``) is
invoked from a node of an outer graph with that node's config, as ``process_chunk``
invokes ours on a part. Its nodes return at once, so the time is the framework's:
config and callback setup, channels, the task of each step. ``bench/overhead.py
--nesting`` prints it beside the cost of one of our nested invocations.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, Send


class State(TypedDict, total=False):
    step: int
    found: Annotated[list[int], operator.add]
    seconds: float


async def _step(state: State) -> dict[str, Any]:
    return {"step": state.get("step", 0) + 1}


def _fan_out(fanout: int) -> Callable[[State], Awaitable[Command]]:
    """A ``split`` node that sends ``fanout`` reads."""

    async def split(state: State) -> Command:
        # Sends returned by the node, as ``split`` does: a plain function given as an
        # edge would run in the loop's executor, a thread hop per invocation.
        return Command(goto=[Send("read", {"step": index}) for index in range(fanout)])

    return split


async def _read(state: State) -> dict[str, Any]:
    return {"found": [state["step"]]}


def inner_graph(fanout: int) -> CompiledStateGraph:
    """``check`` -> ``split`` -> ``fanout`` x ``read`` (``Send``) -> ``synthesize``, each doing nothing."""
    builder = StateGraph(State)
    builder.add_node("check", _step)
    builder.add_node("split", _fan_out(fanout), destinations=("read",))
    builder.add_node("read", _read)
    builder.add_node("synthesize", _step)
    builder.add_edge(START, "check")
    builder.add_edge("check", "split")
    builder.add_edge("read", "synthesize")
    builder.add_edge("synthesize", END)
    return builder.compile()


def timed_from_a_node(fanout: int, invocations: int) -> CompiledStateGraph:
    """An outer graph whose one node invokes the inner graph ``invocations`` times and keeps the mean time."""
    inner = inner_graph(fanout)

    async def invoke_inner(state: State, config: RunnableConfig) -> dict[str, Any]:
        started = time.perf_counter()
        for _ in range(invocations):
            await inner.ainvoke({"step": 0}, config)
        return {"seconds": (time.perf_counter() - started) / invocations}

    builder = StateGraph(State)
    builder.add_node("invoke_inner", invoke_inner)
    builder.add_edge(START, "invoke_inner")
    builder.add_edge("invoke_inner", END)
    return builder.compile()

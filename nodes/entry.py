"""A node's sync and async entry points, built from one body.

Model-calling nodes are written as :data:`rlm_graph.calls.CallSteps` (:func:`node_runnable`);
``check`` and ``split``, which may tokenize a whole document at the top level, are plain
functions (:func:`planning_runnable`).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.runnables import Runnable, RunnableLambda
from langgraph.config import get_config

from rlm_graph.calls import CallSteps, adrive, drive
from rlm_graph.level import CONFIG_DEPTH, Level
from rlm_graph.settings import Settings

__all__ = ["node_runnable", "planning_runnable"]


def node_runnable(name: str, settings: Settings, body: Callable[[Level, Any], CallSteps]) -> Runnable:
    """A node's sync and async entry points, built from one body.

    Args:
        name: The node's name.
        settings: The graph's settings.
        body: The node logic; it gets the level (read from the input's ``run_key``,
            the running config and context) and the node input.

    Returns:
        The node runnable.
    """

    def func(node_input: Any) -> Any:
        level = Level.current(settings, node_input["run_key"])
        return drive(level, body(level, node_input))

    async def afunc(node_input: Any) -> Any:
        level = Level.current(settings, node_input["run_key"])
        return await adrive(level, body(level, node_input))

    return _lambda(name, func, afunc)


def planning_runnable(
    name: str, func: Callable[[Any], Any], afunc: Callable[[Any], Awaitable[Any]] | None = None
) -> Runnable:
    """A node that may tokenize the whole document at the top level (``check``, ``split``).

    An async run gives its top-level call a thread, so counting a long document does
    not stall the event loop (tiktoken releases the GIL, so the loop goes on meanwhile).
    Nested levels never count the document: they run on the loop, sparing a thread
    hop for each of the many nested invocations.

    Args:
        name: The node's name.
        func: The node logic (sync).
        afunc: The top-level async entry, when it needs more than ``func`` in a thread.

    Returns:
        The node runnable.
    """

    async def nested_inline(node_input: Any) -> Any:
        if get_config().get("configurable", {}).get(CONFIG_DEPTH, 0):
            return func(node_input)
        if afunc is not None:
            return await afunc(node_input)
        return await asyncio.to_thread(func, node_input)

    return _lambda(name, func, nested_inline)


def _lambda(name: str, func: Callable[[Any], Any], afunc: Callable[[Any], Awaitable[Any]]) -> Runnable:
    # langchain_core inspects a RunnableLambda's functions on every call (does it take a
    # config, a run manager?); a signature computed once makes that a lookup per part.
    for entry in (func, afunc):
        entry.__signature__ = inspect.signature(entry)  # type: ignore[attr-defined]
    return RunnableLambda(func, afunc=afunc, name=name)

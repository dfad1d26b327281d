"""A node's sync and async entry points, built from one body written as :data:`rlm_graph.calls.CallSteps`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from langchain_core.runnables import Runnable, RunnableLambda

from rlm_graph.calls import CallSteps, adrive, drive
from rlm_graph.level import Level
from rlm_graph.settings import Settings

__all__ = ["node_runnable"]


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

    # langchain_core inspects a RunnableLambda's functions on every call (does it take a
    # config, a run manager?); a signature computed once makes that a lookup per part.
    for entry in (func, afunc):
        entry.__signature__ = inspect.signature(entry)  # type: ignore[attr-defined]
    return RunnableLambda(func, afunc=afunc, name=name)

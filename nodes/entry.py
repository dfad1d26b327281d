"""A node's sync and async entry points, built from one body.

Model-calling nodes are written as :data:`rlm_graph.calls.CallSteps` (:func:`node_runnable`);
``check`` and ``split``, which may tokenize a whole document at the top level, are
written as steps that give an async run's event loop back between slices
(:func:`planning_runnable`); the edge after ``check`` runs inline (:func:`inline_runnable`).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.runnables import Runnable, RunnableLambda

try:
    # LangGraph's wrapper for a node function. It is internal, so a LangGraph that moves it
    # gets langchain_core's RunnableLambda, which works the same at a cost per call.
    from langgraph._internal._runnable import RunnableCallable
except ImportError:  # pragma: no cover - depends on the installed LangGraph
    RunnableCallable = None

from rlm_graph.calls import CallSteps, adrive, drive
from rlm_graph.level import Level
from rlm_graph.retries import RetryAnnouncer, pending_retry
from rlm_graph.settings import Settings
from rlm_graph.steps import Steps, arun_steps, run_steps

__all__ = ["PlanSteps", "entry_runnable", "inline_runnable", "node_runnable", "planning_runnable"]


def node_runnable(
    name: str,
    settings: Settings,
    body: Callable[[Level, Any], CallSteps],
    *,
    on_retry: RetryAnnouncer | None = None,
) -> Runnable:
    """A node's sync and async entry points, built from one body.

    Args:
        name: The node's name.
        settings: The graph's settings.
        body: The node logic; it gets the level (read from the input's ``run_key``,
            the running config and context) and the node input.
        on_retry: Writes the node's ``retrying`` progress event when a failure
            leaving the node will be retried by its retry policy.

    Returns:
        The node runnable.
    """

    def announce(level: Level, node_input: Any, error: Exception) -> None:
        # Here, where the failure leaves the node, is what LangGraph's retry policy sees.
        if on_retry is not None and (fields := pending_retry(level, error)) is not None:
            on_retry(level, node_input, fields)

    def func(node_input: Any) -> Any:
        level = Level.current(settings, node_input["run_key"])
        try:
            return drive(level, body(level, node_input))
        except Exception as error:
            announce(level, node_input, error)
            raise

    async def afunc(node_input: Any) -> Any:
        level = Level.current(settings, node_input["run_key"])
        try:
            return await adrive(level, body(level, node_input))
        except Exception as error:
            announce(level, node_input, error)
            raise

    return entry_runnable(name, func, afunc)


PlanSteps = Steps[Any]
"""A planning node's body (:data:`rlm_graph.steps.Steps`); it returns the node's output."""


def planning_runnable(
    name: str, steps: Callable[[Any], PlanSteps], async_steps: Callable[[Any], PlanSteps] | None = None
) -> Runnable:
    """A node that may tokenize a whole document (``check``, ``split``), written as steps.

    A sync run goes through the steps at once. An async run goes through them on its
    event loop and gives the loop back at every ``yield``, so the host application's
    other coroutines (another user's stream, a health check) keep running while a long
    document is planned, each waiting at most one slice. A step that cannot be cut
    into slices (building a search index) is yielded as a function: a sync run calls
    it, an async run calls it in a thread.

    Not a thread for the whole: see :mod:`rlm_graph.steps`.

    Args:
        name: The node's name.
        steps: The node logic; ``next`` runs it to its next pause.
        async_steps: The async run's logic, when it differs from ``steps``.

    Returns:
        The node runnable.
    """

    def func(node_input: Any) -> Any:
        return run_steps(steps(node_input))

    async def afunc(node_input: Any) -> Any:
        return await arun_steps((async_steps or steps)(node_input))

    return entry_runnable(name, func, afunc)


def inline_runnable(name: str, func: Callable[[Any], Any]) -> Runnable:
    """A node or edge whose work is short and bounded: run inline, sync and async.

    Args:
        name: The node's name.
        func: The node logic.

    Returns:
        The node runnable.
    """

    async def afunc(node_input: Any) -> Any:
        return func(node_input)

    return entry_runnable(name, func, afunc)


def entry_runnable(name: str, func: Callable[[Any], Any], afunc: Callable[[Any], Awaitable[Any]]) -> Runnable:
    """A node from its sync and async entry points, as LangGraph makes one from a plain function.

    Args:
        name: The node's name.
        func: The sync entry point; it takes the node input.
        afunc: The async entry point, with the same body.

    Returns:
        The node runnable.
    """
    if RunnableCallable is not None:
        # What ``add_node`` makes of a plain function: the signature is read once, and the
        # node's run is the task's own (no second callback manager and child run per call).
        return RunnableCallable(func, afunc, name=name, trace=False)
    # langchain_core inspects a RunnableLambda's functions on every call (does it take a
    # config, a run manager?); a signature computed once makes that a lookup per part.
    for entry in (func, afunc):
        entry.__signature__ = inspect.signature(entry)  # type: ignore[attr-defined]
    return RunnableLambda(func, afunc=afunc, name=name)

"""Reading a long document's first leaves while ``split`` is still planning the rest.

Planning tokenizes the whole document, which at ten million tokens takes seconds.
When no budget needs the whole plan checked first, ``split`` plans section by
section (:func:`rlm_graph.leaves.stream_leaves`) and starts each finished leaf's
reading call at once, under the run's limiter. The call is the one ``process_chunk``
will make for that leaf (same prompt, same model); it is held in the run's
:class:`rlm_graph.pending_reads.PendingReads`, and the ``process_chunk`` that reads
the leaf, at whatever depth the tree puts it, takes its reply (:mod:`rlm_graph.calls`).
The tree, the events, retries and error handling stay as they are: only the call is
made earlier. A sync run makes these calls in threads; an async run plans on its
event loop, pausing between sections, and makes them in tasks there. Both carry
the ``split`` node's context, so tracers show them under ``split`` with the run
metadata ``rlm_kind="read_ahead"``.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
from collections.abc import Callable
from typing import Any

from rlm_graph.calls import ModelCall, acall_model, call_model, read_ahead_key
from rlm_graph.level import Level

__all__ = ["StartReads", "in_tasks", "in_threads"]

StartReads = Callable[[list[ModelCall]], None]
"""Starts reading calls ahead of their parts (called by the planning ``split``)."""


def _ahead(call: ModelCall) -> ModelCall:
    # Its own kind, so the call made ahead is not mistaken for the reader taking it.
    return dataclasses.replace(call, kind="read_ahead")


def in_threads(level: Level) -> StartReads:
    """Start calls ahead in the run's own threads (sync runs).

    Args:
        level: The top level of the run.

    Returns:
        The starter.
    """
    pending = level.resources.pending_reads

    def start(calls: list[ModelCall]) -> None:
        try:
            executor = pending.executor(level.resources.max_concurrency)
            for call in calls:
                key = read_ahead_key(call, level.settings.role_of(call.large))
                pending.hold(key, executor.submit(contextvars.copy_context().run, call_model, level, _ahead(call)))
        except RuntimeError:
            return  # the run was released meanwhile: its parts will not be read

    return start


def in_tasks(level: Level) -> StartReads:
    """Start calls ahead as tasks on the running event loop (async runs, which plan on it).

    Args:
        level: The top level of the run.

    Returns:
        The starter.
    """
    pending = level.resources.pending_reads
    loop = asyncio.get_running_loop()

    def start(calls: list[ModelCall]) -> None:
        context = contextvars.copy_context()
        for call in calls:
            key = read_ahead_key(call, level.settings.role_of(call.large))
            task = loop.create_task(acall_model(level, _ahead(call)), context=context)
            task.add_done_callback(_observe)
            pending.hold(key, task)

    return start


def _observe(task: asyncio.Task[Any]) -> None:
    # A failure is handed to the reader that takes the task; one never taken (the run
    # ended first) is read here, so asyncio does not report it as never retrieved.
    if not task.cancelled():
        task.exception()

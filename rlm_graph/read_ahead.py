"""Reading a long document's first leaves while ``split`` is still planning the rest.

Planning tokenizes the whole document, which at ten million tokens takes seconds.
When no budget needs the whole plan checked first, ``split`` plans section by
section (:func:`rlm_graph.leaves.stream_leaves`) and starts each finished leaf's
reading call at once, under the run's limiter. The call is the one ``process_chunk``
will make for that leaf (same prompt, same model); it is held in the run's
:class:`rlm_graph.pending_reads.PendingReads`, and the ``process_chunk`` that reads
the leaf, at whatever depth the tree puts it, takes its reply (:mod:`rlm_graph.calls`).
The tree, the events, retries and error handling stay as they are: only the call is
made earlier. A sync run makes these calls in a pool of threads; an async run plans
on its event loop, pausing between sections, and makes them in as many worker tasks
there (``max_concurrency`` of each, the run's limit on calls under way). Both carry
the ``split`` node's context, so tracers show them under ``split`` with the run
metadata ``rlm_kind="read_ahead"``.
"""

from __future__ import annotations

import asyncio
import collections
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
    """Start calls ahead on the running event loop (async runs, which plan on it).

    Like the sync run's thread pool, at most ``max_concurrency`` calls are under way at
    a time: each planned call is held as a future at once, and a few worker tasks take
    them in order. A task per call, started as soon as planned, held its coroutines
    and contexts for every leaf of the plan at once (1,500 at 10M tokens), all waiting
    for the same slots; the garbage collector then moved tens of thousands of objects
    to its oldest generation in each run.

    Args:
        level: The top level of the run.

    Returns:
        The starter.
    """
    pending = level.resources.pending_reads
    loop = asyncio.get_running_loop()
    queue: collections.deque[tuple[asyncio.Future[Any], ModelCall]] = collections.deque()
    # Counted by the workers themselves as they stop: a done-callback runs a turn later, so
    # a starter could otherwise see finished workers as busy and leave its calls unmade.
    working = [0]

    async def work() -> None:
        try:
            while queue:
                future, call = queue.popleft()
                if future.done():
                    continue  # cancelled: the run ended before it was started
                try:
                    result = await acall_model(level, call)
                except asyncio.CancelledError:
                    future.cancel()
                    raise
                except Exception as error:  # noqa: BLE001 - handed to the reader that takes the call
                    if not future.done():
                        future.set_exception(error)
                else:
                    if not future.done():
                        future.set_result(result)
        finally:
            working[0] -= 1

    def start(calls: list[ModelCall]) -> None:
        context = contextvars.copy_context()
        for call in calls:
            future: asyncio.Future[Any] = loop.create_future()
            future.add_done_callback(_observe)
            if pending.hold(read_ahead_key(call, level.settings.role_of(call.large)), future):
                queue.append((future, _ahead(call)))
        while queue and working[0] < min(len(queue), level.resources.max_concurrency):
            working[0] += 1
            pending.hold_worker(loop.create_task(work(), context=context))

    return start


def _observe(call: asyncio.Future[Any]) -> None:
    # A failure is handed to the reader that takes the call; one never taken (the run
    # ended first) is read here, so asyncio does not report it as never retrieved.
    if not call.cancelled():
        call.exception()

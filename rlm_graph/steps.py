"""Work written as steps: a generator that pauses between slices, and its sync and async drivers.

Planning a long document is CPU work that an async run does on its own event loop
(``rlm_graph.nodes.entry.planning_runnable``, the navigator's tools), so it is written
as a generator that yields ``None`` where the loop may be given back, or a function to
run off the loop (a piece of work that cannot pause), whose result is sent back in. A
sync caller runs the steps straight through with :func:`run_steps`; an async caller
with :func:`arun_steps`.

Not a thread for the whole: beside an event loop that is busy with Python work, a
thread gets the GIL back only when it happens to win it at one of the loop's polls.
Measured with CPython 3.11 on two cores: 422 tokenizer calls took 25.6 s in a thread
beside such a loop against 0.045 s alone, and pure Python work 5.2 s against 0.1 s
(``bench/overhead.py --busy-loop`` shows what it does to a whole run).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from typing import Any, TypeVar

__all__ = ["Steps", "arun_steps", "run_steps"]

T = TypeVar("T")

Steps = Generator[Callable[[], Any] | None, Any, T]
"""Steps that return a ``T``: they yield ``None`` at a pause, or a function to run off the loop.

A yielded function that also has an ``acall`` coroutine method (work that is async of
its own, such as model calls) is awaited on the loop by :func:`arun_steps`.
"""


def run_steps(steps: Steps[T]) -> T:
    """Run ``steps`` straight through: pauses are skipped, yielded functions are called here.

    Args:
        steps: The steps.

    Returns:
        What the steps return.
    """
    result = None
    while True:
        try:
            request = steps.send(result)
        except StopIteration as done:
            return done.value
        result = None if request is None else request()


async def arun_steps(steps: Steps[T]) -> T:
    """Run ``steps`` on the running event loop, giving it back at every pause.

    The loop's other coroutines (another user's stream, a health check) run between
    slices, each waiting at most one slice; a yielded function runs in a thread, so
    that a piece of work that cannot pause does not hold the loop, unless it has an
    async entry (``acall``), which is awaited here.

    Args:
        steps: The steps.

    Returns:
        What the steps return.
    """
    result = None
    while True:
        try:
            request = steps.send(result)
        except StopIteration as done:
            return done.value
        if request is None:
            await asyncio.sleep(0)
            result = None
        elif (acall := getattr(request, "acall", None)) is not None:
            result = await acall()
        else:
            result = await asyncio.to_thread(request)

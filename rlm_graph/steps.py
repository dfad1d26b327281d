"""Work written as steps: a generator that pauses between slices, and its sync driver.

Planning a long document is CPU work that an async run does on its own event loop
(``rlm_graph.nodes.entry.planning_runnable``), so it is written as a generator that
yields ``None`` where the loop may be given back, or a function to run off the loop
(a piece of work that cannot pause), whose result is sent back in. A sync caller
runs the steps straight through with :func:`run_steps`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

__all__ = ["Steps", "run_steps"]

T = TypeVar("T")

Steps = Generator[Callable[[], Any] | None, Any, T]
"""Steps that return a ``T``: they yield ``None`` at a pause, or a function to run off the loop."""


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

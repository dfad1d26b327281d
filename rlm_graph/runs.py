"""Per-run shared resources: the model-call limiter and progress counters.

LangGraph's ``max_concurrency`` applies per graph invocation, so recursion would
multiply it. Every invocation of one run (all depths) finds the same
:class:`RunResources` through the run key carried in state and config; only the
key is stored, so checkpoints stay serialisable and a resumed run in another
process simply gets fresh resources.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator

# Runs that crash never release their entry; the oldest entries beyond this many
# are dropped so such leaks stay bounded.
_MAX_TRACKED_RUNS = 4096


class RunResources:
    """The limiter and counters shared by every invocation of one run."""

    def __init__(self, max_concurrency: int) -> None:
        self.max_concurrency = max_concurrency
        self._thread_slots = threading.BoundedSemaphore(max_concurrency)
        self._async_slots: asyncio.Semaphore | None = None
        self._lock = threading.Lock()
        self._counters: dict[tuple[object, ...], int] = {}

    @contextlib.asynccontextmanager
    async def async_slot(self) -> AsyncIterator[None]:
        """Hold one model-call slot (async code)."""
        if self._async_slots is None:
            self._async_slots = asyncio.Semaphore(self.max_concurrency)
        async with self._async_slots:
            yield

    @contextlib.contextmanager
    def thread_slot(self) -> Iterator[None]:
        """Hold one model-call slot (sync code)."""
        with self._thread_slots:
            yield

    def count(self, key: tuple[object, ...]) -> int:
        """Current value of a counter (0 if never advanced)."""
        with self._lock:
            return self._counters.get(key, 0)

    def advance(self, key: tuple[object, ...]) -> int:
        """Add one to a counter and return its new value.

        Args:
            key: Which counter (for example scope and stage).

        Returns:
            The count after this call.
        """
        with self._lock:
            value = self._counters.get(key, 0) + 1
            self._counters[key] = value
            return value


_registry: OrderedDict[str, RunResources] = OrderedDict()
_registry_lock = threading.Lock()


def resources_for(run_key: str, max_concurrency: int) -> RunResources:
    """Return the resources of a run, creating them on first use.

    Args:
        run_key: The run's key.
        max_concurrency: Slot count, used when the entry is created.

    Returns:
        The run's shared resources.
    """
    with _registry_lock:
        found = _registry.get(run_key)
        if found is None:
            found = RunResources(max_concurrency)
            _registry[run_key] = found
            while len(_registry) > _MAX_TRACKED_RUNS:
                _registry.popitem(last=False)
        return found


def release(run_key: str) -> None:
    """Forget a finished run's resources.

    Args:
        run_key: The run's key.
    """
    with _registry_lock:
        _registry.pop(run_key, None)

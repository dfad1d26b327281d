"""Reading calls started ahead of their part, held until the part's reader takes them.

``split`` starts the reading calls of a long document's first leaves while it is
still planning the rest (:mod:`rlm_graph.read_ahead`). Each call is held here under
its span and prompt size; when ``process_chunk`` reads that leaf (at whatever depth
the tree puts it), :mod:`rlm_graph.calls` takes the call's reply from here instead
of sending the prompt again. A run that ends first cancels what was not taken.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Hashable
from typing import Any

__all__ = ["PendingReads"]


class PendingReads:
    """The run's reading calls made ahead, by key, and the threads (sync runs) or tasks (async) that make them."""

    def __init__(self) -> None:
        self._calls: dict[Hashable, asyncio.Future[Any] | concurrent.futures.Future[Any]] = {}
        self._lock = threading.Lock()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._workers: set[asyncio.Task[Any]] = set()
        self._closed = False

    def executor(self, workers: int) -> concurrent.futures.ThreadPoolExecutor:
        """The threads that make this run's calls ahead in a sync run, created on first use.

        Args:
            workers: Thread count (the run's ``max_concurrency``; its limiter still caps the calls).

        Returns:
            The executor; it is shut down when the run is released.

        Raises:
            RuntimeError: If the run was released already (no threads are started for it).
        """
        with self._lock:
            if self._closed:
                msg = "the run was released: no more calls are started ahead"
                raise RuntimeError(msg)
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="rlm-read-ahead")
            return self._executor

    def hold(self, key: Hashable, call: asyncio.Future[Any] | concurrent.futures.Future[Any]) -> bool:
        """Keep a call started ahead until its reader takes it.

        Args:
            key: What identifies the reading call (see :func:`rlm_graph.calls.read_ahead_key`).
            call: The running call.

        Returns:
            Whether it is held; a run already released cancels it instead.
        """
        with self._lock:
            if not self._closed and key not in self._calls:
                self._calls[key] = call
                return True
        _cancel(call)
        return False

    def hold_worker(self, worker: asyncio.Task[Any]) -> None:
        """Keep a task that makes calls ahead in an async run, so that the run's end stops it.

        Args:
            worker: The task; a run already released cancels it instead.
        """
        with self._lock:
            if not self._closed:
                self._workers.add(worker)
                worker.add_done_callback(self._workers.discard)
                return
        _cancel(worker)

    def take(self, key: Hashable) -> asyncio.Future[Any] | concurrent.futures.Future[Any] | None:
        """The call started ahead under ``key``, handed over once (a retry makes its own call).

        Args:
            key: What identifies the reading call.

        Returns:
            The call, or ``None`` when none was started ahead.
        """
        with self._lock:
            return self._calls.pop(key, None)

    def cancel(self) -> None:
        """Cancel every call not taken, and stop the threads: the run is over."""
        with self._lock:
            self._closed = True
            calls, self._calls = list(self._calls.values()), {}
            workers, self._workers = list(self._workers), set()
            executor, self._executor = self._executor, None
        for call in [*calls, *workers]:
            _cancel(call)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


def _cancel(call: asyncio.Future[Any] | concurrent.futures.Future[Any]) -> None:
    if isinstance(call, asyncio.Future):
        # A task is cancelled on its own loop, whichever thread releases the run.
        loop = call.get_loop()
        if not loop.is_closed():
            loop.call_soon_threadsafe(call.cancel)
    else:
        call.cancel()

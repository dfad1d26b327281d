"""An in-memory LRU of part indexes, so a follow-up question on the same document reuses its index.

The key is the retriever's identity, the document's sha256 and the part plan. An
async run builds an index on its event loop in slices where the retriever can
(:meth:`rlm_graph.retrieval.BM25Retriever.build_in_steps`), and otherwise in a thread.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from rlm_graph.retrieval import PartIndex, Retriever
from rlm_graph.steps import Steps, run_steps

__all__ = ["IndexCache"]


class IndexCache:
    """A small in-memory LRU of part indexes, keyed by document hash, part plan and retriever.

    Lives as long as the compiled graph; not shared across processes (an index is
    cheap to rebuild next to reading the parts it ranks).

    Args:
        maxsize: Most indexes kept; the least recently used go first.
    """

    def __init__(self, maxsize: int = 16) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[tuple[str, ...], PartIndex] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(retriever: Retriever, document: str, spans: Sequence[tuple[int, int]]) -> tuple[str, ...]:
        """The cache key: retriever identity, sha256 of the document, and a digest of the part spans."""
        plan = hashlib.sha256(repr(list(spans)).encode()).hexdigest()
        return (retriever.identity, hashlib.sha256(document.encode()).hexdigest(), plan)

    def get_or_build(
        self, retriever: Retriever, document: str, spans: Sequence[tuple[int, int]]
    ) -> tuple[PartIndex, float, bool]:
        """Return the index of these parts, building it on first use.

        Args:
            retriever: Builds the index.
            document: The text the spans point into.
            spans: ``(start, end)`` of every part, in plan order, in ``document`` offsets.

        Returns:
            The index, seconds spent building it (0 when reused), and whether it was reused.
        """
        return run_steps(self.get_or_build_in_steps(retriever, document, spans))

    def get_or_build_in_steps(
        self, retriever: Retriever, document: str, spans: Sequence[tuple[int, int]]
    ) -> Steps[tuple[PartIndex, float, bool]]:
        """:meth:`get_or_build` as steps (:mod:`rlm_graph.steps`), for an async caller's event loop.

        The retriever's ``build_in_steps`` when it has one; otherwise its ``build``, as a
        function the steps yield (an async run calls it in a thread: a vector store's
        build is embedding calls). The seconds are wall time, pauses included.
        """
        key = self.key(retriever, document, spans)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found, 0.0, True
        started = time.perf_counter()
        texts = [document[start:end] for start, end in spans]
        in_steps = _build_in_steps(retriever)
        if in_steps is not None:
            index = yield from in_steps(texts)
        else:
            index = yield functools.partial(retriever.build, texts)
        seconds = time.perf_counter() - started
        with self._lock:
            self._entries[key] = index
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
        return index, seconds, False


def _build_in_steps(retriever: Retriever) -> Callable[[Sequence[str]], Steps[PartIndex]] | None:
    """The retriever's ``build_in_steps``, unless a subclass overrides ``build`` below it.

    A subclass of :class:`rlm_graph.retrieval.BM25Retriever` that overrides only ``build`` (to add to it, or
    to count builds) means that ``build`` to run, so the steps inherited from above it are
    not used.
    """
    in_steps = getattr(retriever, "build_in_steps", None)
    if in_steps is None:
        return None
    mro = type(retriever).__mro__
    build_owner = next((c for c in mro if "build" in vars(c)), None)
    steps_owner = next((c for c in mro if "build_in_steps" in vars(c)), None)
    if build_owner is None or steps_owner is None:
        return None  # not methods of its class: only ``build`` is sure to mean what it says
    return in_steps if issubclass(steps_owner, build_owner) else None

"""The reply cache, keyed by model identity and messages, and the bounded in-memory default.

Replies are cached per model call, keyed by the model's identity and the exact
messages sent, and hold only the reply text. The nodes always run, so a repeated
question still reports progress and frees its run, counts no calls it did not make,
and reaches its answer without calling the model at all.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage
from langgraph.cache.base import BaseCache, FullKey, Namespace, ValueT
from langgraph.checkpoint.serde.base import SerializerProtocol

__all__ = ["REPLY_NAMESPACE", "BoundedInMemoryCache", "ReplyCache", "reply_key"]

_log = logging.getLogger(__name__)

REPLY_NAMESPACE: Namespace = ("rlm_graph", "replies")
"""Namespace of cached replies in the cache backend (for ``cache.clear([REPLY_NAMESPACE])``)."""

def reply_key(identity: str, messages: Sequence[BaseMessage]) -> str:
    """Cache key of one model call: the model's identity and the exact messages sent.

    The messages hold the system prompt, the prompt template and the text, so a
    changed prompt, question or part never meets a reply written for another.

    Args:
        identity: ``model_identity`` of the model that answers.
        messages: The prompt.

    Returns:
        A hex SHA-256 digest.
    """
    digest = hashlib.sha256(identity.encode())
    for message in messages:
        digest.update(b"\x00")
        body = [message.type, message.content, message.additional_kwargs, message.name]
        digest.update(json.dumps(body, sort_keys=True, ensure_ascii=False, default=str).encode())
    return digest.hexdigest()


class ReplyCache:
    """Model replies kept in a LangGraph cache backend, under ``REPLY_NAMESPACE``.

    Only successful, non-empty reply texts are stored: a failure or an empty reply
    is asked again next time, never replayed. The cache only saves calls, so a
    backend that fails to read or write is logged and bypassed, not allowed to
    fail the run.
    """

    def __init__(self, backend: BaseCache, ttl: int | None) -> None:
        """Wrap a backend.

        Args:
            backend: Any LangGraph ``BaseCache``.
            ttl: Seconds a reply stays valid (``None``: no expiry).
        """
        self.backend = backend
        self.ttl = ttl

    @staticmethod
    def key(identity: str, messages: Sequence[BaseMessage]) -> FullKey:
        """The backend key of one call (see :func:`reply_key`)."""
        return REPLY_NAMESPACE, reply_key(identity, messages)

    @staticmethod
    def _text(found: Mapping[FullKey, Any], key: FullKey) -> str | None:
        text = found.get(key)
        return text if isinstance(text, str) and text.strip() else None

    def get(self, key: FullKey) -> str | None:
        """The cached reply of ``key``, if any."""
        try:
            return self._text(self.backend.get([key]), key)
        except Exception as error:  # noqa: BLE001 - a broken cache must not fail the run
            _log.warning("reply cache read failed, calling the model: %s", error)
            return None

    async def aget(self, key: FullKey) -> str | None:
        """The cached reply of ``key``, if any (async)."""
        try:
            return self._text(await self.backend.aget([key]), key)
        except Exception as error:  # noqa: BLE001 - a broken cache must not fail the run
            _log.warning("reply cache read failed, calling the model: %s", error)
            return None

    def put(self, key: FullKey, text: str) -> None:
        """Store a fresh reply (an empty one is not stored)."""
        if not text.strip():
            return
        try:
            self.backend.set({key: (text, self.ttl)})
        except Exception as error:  # noqa: BLE001 - the reply is good; only its reuse is lost
            _log.warning("reply cache write failed: %s", error)

    async def aput(self, key: FullKey, text: str) -> None:
        """Store a fresh reply (async; an empty one is not stored)."""
        if not text.strip():
            return
        try:
            await self.backend.aset({key: (text, self.ttl)})
        except Exception as error:  # noqa: BLE001 - the reply is good; only its reuse is lost
            _log.warning("reply cache write failed: %s", error)


class BoundedInMemoryCache(BaseCache[ValueT]):
    """A LangGraph cache held in memory, bounded by entry count, bytes and age.

    LangGraph's ``InMemoryCache`` drops an expired entry only when that same key is
    read again, so entries of documents never asked about again stay forever. This
    one is a least-recently-used cache: past ``max_entries`` entries or
    ``max_bytes`` of stored values, the least recently read or written entries go
    first, and every read or write also drops the entries whose TTL has passed.
    It is the default cache of ``create_rlm_graph``; any other LangGraph
    ``BaseCache`` (for example ``SqliteCache``) can be passed instead.
    """

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        serde: SerializerProtocol | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Create an empty cache.

        Args:
            max_entries: Most entries held; at least 1.
            max_bytes: Most bytes of serialized values held; at least 1. An entry
                larger than this on its own is not stored.
            serde: Serializer of the values (LangGraph's default when ``None``).
            clock: Seconds since the epoch; replaceable in tests.

        Raises:
            ValueError: If a bound is below 1.
        """
        super().__init__(serde=serde)
        for name, bound in (("max_entries", max_entries), ("max_bytes", max_bytes)):
            if not isinstance(bound, int) or bound < 1:
                msg = f"{name} must be an int of at least 1, got {bound!r}"
                raise ValueError(msg)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.RLock()
        # Least recently used first: full key -> (encoding, value bytes, expiry or None).
        self._entries: OrderedDict[FullKey, tuple[str, bytes, float | None]] = OrderedDict()
        self._expiries: list[tuple[float, FullKey]] = []
        self._bytes = 0

    def __len__(self) -> int:
        """Live entries (expired ones are dropped first)."""
        with self._lock:
            self._expire(self._clock())
            return len(self._entries)

    @property
    def _cache(self) -> dict[Namespace, dict[str, tuple[str, bytes, float | None]]]:
        """A snapshot in ``InMemoryCache``'s layout, for tools that inspect that one."""
        with self._lock:
            self._expire(self._clock())
            snapshot: dict[Namespace, dict[str, tuple[str, bytes, float | None]]] = {}
            for (namespace, key), entry in self._entries.items():
                snapshot.setdefault(namespace, {})[key] = entry
            return snapshot

    @property
    def size_bytes(self) -> int:
        """Bytes of serialized values held now (expired ones dropped first)."""
        with self._lock:
            self._expire(self._clock())
            return self._bytes

    def _drop(self, key: FullKey) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[1])

    def _expire(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            expiry, key = heapq.heappop(self._expiries)
            entry = self._entries.get(key)
            # A key written again since has a later expiry; only the current one counts.
            if entry is not None and entry[2] == expiry:
                self._drop(key)

    def _evict(self) -> None:
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))
        if len(self._expiries) > 2 * len(self._entries) + 64:
            # Rewritten keys leave stale heap items behind; rebuild now and then.
            self._expiries = [(e[2], k) for k, e in self._entries.items() if e[2] is not None]
            heapq.heapify(self._expiries)

    def get(self, keys: Sequence[FullKey]) -> dict[FullKey, ValueT]:
        """Get the live values of ``keys`` (missing and expired keys are left out)."""
        with self._lock:
            self._expire(self._clock())
            found: dict[FullKey, ValueT] = {}
            for namespace, key in keys:
                full = (tuple(namespace), key)
                entry = self._entries.get(full)
                if entry is not None:
                    self._entries.move_to_end(full)
                    found[full] = self.serde.loads_typed((entry[0], entry[1]))
            return found

    async def aget(self, keys: Sequence[FullKey]) -> dict[FullKey, ValueT]:
        """Get the live values of ``keys`` (in memory, so it does not block)."""
        return self.get(keys)

    def set(self, pairs: Mapping[FullKey, tuple[ValueT, int | None]]) -> None:
        """Store values with their TTL in seconds (``None``: until evicted)."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            for (namespace, key), (value, ttl) in pairs.items():
                full = (tuple(namespace), key)
                encoding, raw = self.serde.dumps_typed(value)
                self._drop(full)
                if len(raw) > self.max_bytes:
                    continue
                expiry = None if ttl is None else now + ttl
                self._entries[full] = (encoding, raw, expiry)
                self._bytes += len(raw)
                if expiry is not None:
                    heapq.heappush(self._expiries, (expiry, full))
            self._evict()

    async def aset(self, pairs: Mapping[FullKey, tuple[ValueT, int | None]]) -> None:
        """Store values with their TTL in seconds (in memory, so it does not block)."""
        self.set(pairs)

    def clear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        """Drop every entry, or only those of ``namespaces``."""
        with self._lock:
            if namespaces is None:
                self._entries.clear()
                self._expiries.clear()
                self._bytes = 0
                return
            wanted = {tuple(namespace) for namespace in namespaces}
            for full in [full for full in self._entries if full[0] in wanted]:
                self._drop(full)

    async def aclear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        """Drop every entry, or only those of ``namespaces``."""
        self.clear(namespaces)

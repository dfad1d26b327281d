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
import heapq
import itertools
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence

from rlm_graph.errors import BudgetExceededError
from rlm_graph.pending_reads import PendingReads

# A backstop: every run is released by the invocation that owns it (rlm_graph.lifetime),
# but should an entry outlive its run anyway, the oldest beyond this many are dropped.
_MAX_TRACKED_RUNS = 4096


class _PrioritySlots:
    """An asyncio semaphore that wakes waiters by priority (lower first), then in order."""

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiters: list[tuple[tuple[int, int], int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    async def acquire(self, priority: tuple[int, int]) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as we were cancelled
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


class RunResources:
    """The limiter and counters shared by every invocation of one run."""

    def __init__(
        self, max_concurrency: int, max_llm_calls: int | None = None, max_input_tokens: int | None = None
    ) -> None:
        self.max_concurrency = max_concurrency
        self.max_llm_calls = max_llm_calls
        self.max_input_tokens = max_input_tokens
        self.llm_calls = 0
        self.input_tokens = 0
        # The ledger of the plan that split checked against the budgets (see reserve()).
        self._planned: list[int] | None = None
        self._synthesis_reserve = [0, 0]
        self._thread_slots = threading.BoundedSemaphore(max_concurrency)
        self._async_slots: _PrioritySlots | None = None
        self._lock = threading.Lock()
        self._counters: dict[tuple[object, ...], int] = {}
        # Run-wide reading progress (all depths): leaves the plan sends, and those settled.
        self._leaves_total = 0
        self._leaves_settled: set[tuple[int, int]] = set()
        # Keyed by (hash, length) rather than the text, so the memo holds no copy of it.
        self._token_memo: dict[tuple[int, int], int] = {}
        self.text: str | None = None
        """The root document, neutralized: runs without a checkpointer send offsets, not
        text, to their parts, which slice it from here when they are read."""
        self.structured_refused = False
        """The model refused a JSON schema under ``reply_format="auto"``: the rest of the run is text."""
        self.pending_reads = PendingReads()
        """Reading calls ``split`` started before its plan was whole (rlm_graph.read_ahead)."""

    def forget_counts(self) -> None:
        """Drop the token memo once the document is planned (nested levels reuse the plan)."""
        self._token_memo.clear()

    def memo_count(self, count_many: Callable[[Sequence[str]], list[int]]) -> Callable[[Sequence[str]], list[int]]:
        """Wrap a batch counter so each distinct text is counted once per run.

        Nested levels split their part at the same paragraph breaks as the level
        above, so with this the document is tokenized about once, not once per depth.

        Args:
            count_many: The counter to wrap.

        Returns:
            A counter with the same results.
        """
        memo = self._token_memo

        def counted(texts: Sequence[str]) -> list[int]:
            keys = [(hash(text), len(text)) for text in texts]
            missing = {key: text for key, text in zip(keys, texts, strict=True) if key not in memo}
            if missing:
                memo.update(zip(missing, count_many(list(missing.values())), strict=True))
            return [memo[key] for key in keys]

        return counted

    @contextlib.asynccontextmanager
    async def async_slot(self, priority: tuple[int, int] = (1, 0)) -> AsyncIterator[None]:
        """Hold one model-call slot (async code); lower ``priority`` is served first.

        Synthesis calls go ahead of waiting reads: each one unblocks a whole level,
        so serving them first shortens the run's critical path.
        """
        if self._async_slots is None:
            self._async_slots = _PrioritySlots(self.max_concurrency)
        await self._async_slots.acquire(priority)
        try:
            yield
        finally:
            self._async_slots.release()

    @contextlib.contextmanager
    def thread_slot(self) -> Iterator[None]:
        """Hold one model-call slot (sync code)."""
        with self._thread_slots:
            yield

    def reserve(self, calls: int, tokens: int, synthesis_calls: int, synthesis_tokens: int) -> None:
        """Book the run's plan, which ``split`` checked against the budgets.

        The plan's synthesis calls stay reserved until they are made: other calls
        (reads, their retries, relay escalations) may not spend into them, so the
        document read is always answered from.

        Args:
            calls: Planned model calls (an upper bound).
            tokens: Planned input tokens (an upper bound).
            synthesis_calls: How many of ``calls`` are syntheses.
            synthesis_tokens: How many of ``tokens`` the syntheses take.
        """
        with self._lock:
            self._planned = [calls, tokens]
            self._synthesis_reserve = [synthesis_calls, synthesis_tokens]

    def allow_unplanned(self, input_tokens: int) -> bool:
        """Grant one call the plan did not count (a relay escalation), if the budget has room for it.

        It is granted only while the plan plus the calls granted so far stay within
        the budgets, so it never takes the place of a planned read or synthesis.

        Args:
            input_tokens: The call's prompt tokens.

        Returns:
            Whether the call may be made (it is then booked in the plan).
        """
        with self._lock:
            if self._planned is None:
                return True  # no budget was planned: spend() alone governs
            calls, tokens = self._planned[0] + 1, self._planned[1] + input_tokens
            if (self.max_llm_calls is not None and calls > self.max_llm_calls) or (
                self.max_input_tokens is not None and tokens > self.max_input_tokens
            ):
                return False
            self._planned = [calls, tokens]
            return True

    def spend(self, input_tokens: int, *, synthesis: bool = False) -> None:
        """Book one call of ``input_tokens`` against the run's budget, or refuse it.

        A synthesis call draws on the reservation for syntheses; any call is refused
        if it would leave less than what is still reserved for the syntheses to come.

        Args:
            input_tokens: The call's prompt tokens.
            synthesis: Whether the call is a synthesis.

        Raises:
            BudgetExceededError: If the call would take the run over a budget, or
                into what is reserved for synthesis.
        """
        with self._lock:
            held_calls, held_tokens = self._synthesis_reserve
            if synthesis:
                held_calls, held_tokens = max(held_calls - 1, 0), max(held_tokens - input_tokens, 0)
            calls, tokens = self.llm_calls + 1, self.input_tokens + input_tokens
            if self.max_llm_calls is not None and calls + held_calls > self.max_llm_calls:
                if held_calls:
                    msg = (
                        f"refused a model call: the run has used {self.llm_calls} of max_llm_calls="
                        f"{self.max_llm_calls}, and the rest is reserved for the synthesis of what was read"
                    )
                else:
                    msg = f"refused a model call: the run has used all of max_llm_calls={self.max_llm_calls}"
                needed, limit = calls + held_calls, self.max_llm_calls
                raise BudgetExceededError(msg, budget="max_llm_calls", needed=needed, limit=limit)
            if self.max_input_tokens is not None and tokens + held_tokens > self.max_input_tokens:
                msg = (
                    f"refused a model call of {input_tokens} input tokens: the run has used "
                    f"{self.input_tokens} of max_input_tokens={self.max_input_tokens}"
                )
                if held_tokens:
                    msg += f", and {held_tokens} are reserved for the synthesis of what was read"
                limit = self.max_input_tokens
                raise BudgetExceededError(msg, budget="max_input_tokens", needed=tokens + held_tokens, limit=limit)
            self.llm_calls, self.input_tokens = calls, tokens
            self._synthesis_reserve = [held_calls, held_tokens]

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

    def plan_leaves(self, count: int) -> None:
        """Add ``count`` leaves (reading calls) that the run's plan sends.

        Args:
            count: Leaves sent by a top-level split or a focused round.
        """
        with self._lock:
            self._leaves_total += count

    def settle_leaves(self, spans: Iterable[tuple[int, int]] = ()) -> tuple[int, int]:
        """Mark leaves read (or failed), at any depth, and return the run-wide progress.

        A leaf is counted once by its span, so a nested part that failed may settle
        all its leaves, those its own parts already settled included.

        Args:
            spans: ``(start, end)`` of the leaves that were just settled.

        Returns:
            ``(leaves settled, leaves planned)`` for the whole run.
        """
        with self._lock:
            self._leaves_settled.update(spans)
            return len(self._leaves_settled), self._leaves_total


_registry: OrderedDict[str, RunResources] = OrderedDict()
_registry_lock = threading.Lock()


def resources_for(
    run_key: str, max_concurrency: int, max_llm_calls: int | None = None, max_input_tokens: int | None = None
) -> RunResources:
    """Return the resources of a run, creating them on first use.

    Args:
        run_key: The run's key.
        max_concurrency: Slot count, used when the entry is created.
        max_llm_calls: Call budget, used when the entry is created.
        max_input_tokens: Input-token budget, used when the entry is created.

    Returns:
        The run's shared resources.
    """
    with _registry_lock:
        found = _registry.get(run_key)
        if found is None:
            found = RunResources(max_concurrency, max_llm_calls, max_input_tokens)
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
        found = _registry.pop(run_key, None)
    if found is not None:
        # Calls started ahead for parts the run never got to read are not left running.
        found.pending_reads.cancel()

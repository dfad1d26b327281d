"""Reading starts while the plan is still being made (issue 15, section 2).

Without a budget, ``split`` plans a long document section by section and starts
each finished leaf's reading call at once; ``process_chunk`` later takes that
call's reply. These tests check that reading really starts before planning ends,
that no leaf is read twice or lost, and that a budget, focused reading, a failed
call, a cancelled run and a tree too deep for ``max_depth`` behave as before.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
import time
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langgraph.types import RetryPolicy

from rlm_graph import DepthLimitError, create_rlm_graph, is_transient_error
from rlm_graph.leaves import plan_leaves, stream_leaves
from rlm_graph.pending_reads import PendingReads
from rlm_graph.tokens import TiktokenCounter
from tests.fakes import PerfectReader, plant_needles
from tests.test_streaming import RunNames

COUNTER = TiktokenCounter()
QUESTION = "List every NEEDLE code."
FAST_RETRY = RetryPolicy(initial_interval=0.01, max_interval=0.02, max_attempts=3, retry_on=is_transient_error)


class LoggingReader(PerfectReader):
    """A perfect reader whose token counting (the graph's counter) and calls go to one ordered log.

    Counting is slowed a little, so planning takes long enough to watch.
    """

    count_delay: float = 0.0005

    def model_post_init(self, context: Any) -> None:
        super().model_post_init(context)
        object.__setattr__(self, "log", [])
        object.__setattr__(self, "log_lock", threading.Lock())

    def get_num_tokens(self, text: str) -> int:
        time.sleep(self.count_delay)
        with self.log_lock:
            self.log.append(("count", len(text)))
        return super().get_num_tokens(text)

    def counted_before(self, entry: str) -> int:
        """Characters counted before the first ``entry`` in the log."""
        first = self.log.index(entry)
        return sum(item[1] for item in self.log[:first] if isinstance(item, tuple))

    def _answer(self, messages):  # type: ignore[no-untyped-def]
        prompt = "\n".join(m.text for m in messages)
        with self.log_lock:
            self.log.append("read" if "<document_part start=" in prompt else "other")
        return super()._answer(messages)


class Kinds(BaseCallbackHandler):
    """Counts model calls by their ``rlm_kind`` metadata."""

    def __init__(self) -> None:
        self.kinds: dict[str, int] = {}
        self.lock = threading.Lock()

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        kind = (kwargs.get("metadata") or {}).get("rlm_kind", "?")
        with self.lock:
            self.kinds[kind] = self.kinds.get(kind, 0) + 1


def _small_window_graph(**options: object) -> tuple[PerfectReader, Any]:
    """A reader with a 4K window and a graph over it (no reply cache unless ``cache`` is given)."""
    model = PerfectReader(window=4096, reserved_output=512)
    return model, create_rlm_graph(model, **{"cache": False, "max_output_tokens": 512, **options})


@pytest.fixture(scope="module")
def long_document(frankenstein: str, pride: str) -> tuple[str, list[str]]:
    text, facts, _ = plant_needles(frankenstein + "\n\n" + pride, 30)
    return text, facts


async def _run(graph: Any, inputs: dict[str, Any], config: dict[str, Any], mode: str) -> dict[str, Any]:
    if mode == "async":
        return await graph.ainvoke(inputs, config)
    return await asyncio.to_thread(graph.invoke, inputs, config)


class ThreadTally(TiktokenCounter):
    """cl100k_base, noting the thread of every counting call and how far a watcher had got by then."""

    def __init__(self) -> None:
        super().__init__(exact=True)
        self.calls: list[tuple[int, int]] = []
        self.turns = 0

    def count_many(self, texts):  # type: ignore[no-untyped-def]
        self.calls.append((threading.get_ident(), self.turns))
        return super().count_many(texts)


@pytest.mark.parametrize("options", [{}, {"chunk_overlap": 200}], ids=["read ahead", "overlap"])
async def test_an_async_run_plans_on_its_loop_and_takes_turns(
    long_document: tuple[str, list[str]], options: dict[str, Any]
) -> None:
    # In a thread beside a busy event loop, planning waited for the GIL after every tokenizer
    # call (25.6 s for 422 calls against 0.045 s alone; see nodes/entry.py): an async run now
    # plans on its own loop, section by section, and lets the loop's other coroutines run in between.
    text, facts = long_document
    tally = ThreadTally()
    model = PerfectReader(window=4096, reserved_output=512)
    graph = create_rlm_graph(model, token_counter=tally, cache=False, **options)
    done = asyncio.Event()

    async def watcher() -> None:
        while not done.is_set():
            tally.turns += 1
            await asyncio.sleep(0)

    watching = asyncio.create_task(watcher())
    threads_before = set(threading.enumerate())
    out = await graph.ainvoke({"document": text, "question": QUESTION})
    done.set()
    await watching
    assert all(fact in out["answer"] for fact in facts)
    assert {thread for thread, _ in tally.calls} == {threading.get_ident()}
    # Nor does any node or edge hop to the loop's executor (each hop is a thread of its own).
    assert set(threading.enumerate()) <= threads_before
    # The watcher ran between counting calls, many times over, while the plan was made.
    turns_seen = sorted({turns for _, turns in tally.calls})
    assert len(turns_seen) >= 10


async def test_a_long_document_that_may_fit_one_call_is_counted_off_the_loop(frankenstein: str) -> None:
    # With a large part limit, check counts a long document to see whether it fits one call:
    # about 100K tokens here, too long to hold an async run's event loop for.
    tally = ThreadTally()
    model = PerfectReader(window=200_000)
    graph = create_rlm_graph(model, token_counter=tally, cache=False, part_tokens=150_000)
    out = await graph.ainvoke({"document": frankenstein, "question": QUESTION})
    assert out["usage"]["llm_calls"] == 1  # it fits: one direct call
    assert model.overflows == 0
    # The prompt of the direct call is counted on the loop; the document was counted beside it.
    assert {thread for thread, _ in tally.calls} - {threading.get_ident()}


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_reading_starts_before_the_plan_is_whole(long_document: tuple[str, list[str]], mode: str) -> None:
    text, facts = long_document
    model = LoggingReader(window=4096, reserved_output=512)
    graph = create_rlm_graph(model, cache=False, max_output_tokens=512)
    out = await _run(graph, {"document": text, "question": QUESTION}, {}, mode)
    # The first read was made when a small share of the document had been counted.
    assert model.counted_before("read") < len(text) / 4
    assert all(fact in out["answer"] for fact in facts)
    assert out["errors"] == []


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_every_leaf_is_read_once_and_ahead(long_document: tuple[str, list[str]], mode: str) -> None:
    text, facts = long_document
    model, graph = _small_window_graph()
    kinds = Kinds()
    out = await _run(graph, {"document": text, "question": QUESTION}, {"callbacks": [kinds]}, mode)
    reads = [p for p in model.prompts if "<document_part start=" in p]
    assert len(reads) == len(set(reads)) > 30  # no leaf read twice
    # Reads started ahead were taken by their parts, not made again; only the last
    # section's parts (planned when planning was over) were read by the parts themselves.
    ahead, own = kinds.kinds.get("read_ahead", 0), kinds.kinds.get("read", 0)
    assert ahead + own == len(reads)
    assert 0 < own <= 32 < ahead
    assert out["usage"]["llm_calls"] == len(model.prompts)
    assert out["usage"]["max_depth"] >= 1
    assert all(fact in out["answer"] for fact in facts)


async def test_an_async_run_keeps_no_more_reads_ahead_under_way_than_its_concurrency(
    long_document: tuple[str, list[str]],
) -> None:
    # Each read planned ahead is a future until one of max_concurrency workers takes it: a
    # task per planned leaf held its coroutines, contexts and run managers all at once.
    text, facts = long_document
    model = LoggingReader(window=4096, reserved_output=512, delay=0.02)
    graph = create_rlm_graph(model, cache=False, max_output_tokens=512, max_concurrency=2)
    kinds = Kinds()
    most_tasks, planning = 0, True

    async def watch() -> None:
        nonlocal most_tasks
        while planning:
            # LangChain hands each callback event to a task of its own: those are not counted.
            tasks = [t for t in asyncio.all_tasks() if "handle_event" not in t.get_coro().__qualname__]
            most_tasks = max(most_tasks, len(tasks))
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    inputs, config = {"document": text, "question": QUESTION}, {"callbacks": [kinds]}
    async for kind, payload in graph.astream(inputs, config, stream_mode=["custom", "values"]):
        if kind == "custom" and (payload.get("stage"), payload.get("status")) == ("split", "done"):
            planning = False
        if kind == "values":
            out = payload
    planning = False
    await watcher
    # Many more reads than the run's concurrency were made ahead, yet while planning the loop
    # held only LangGraph's and LangChain's tasks for the run and its two calls under way
    # (at most five), this test's two and the two workers (a task per planned read: 84).
    assert kinds.kinds.get("read_ahead", 0) > 10
    assert most_tasks <= 5 + 2 + 2
    assert all(fact in out["answer"] for fact in facts)
    assert out["errors"] == []


def test_the_plan_is_the_same_with_or_without_reading_ahead(long_document: tuple[str, list[str]]) -> None:
    text, _ = long_document
    leaves = []
    for max_llm_calls in (None, 10_000):
        model, graph = _small_window_graph(max_llm_calls=max_llm_calls)
        graph.invoke({"document": text, "question": QUESTION})
        leaves.append(sorted(p for p in model.prompts if "<document_part start=" in p))
    assert leaves[0] == leaves[1]


@pytest.mark.parametrize("budget", [{"max_llm_calls": 10_000}, {"max_input_tokens": 10_000_000}])
def test_a_budget_plans_the_whole_document_before_any_call(long_document: tuple[str, list[str]], budget) -> None:
    text, facts = long_document
    model = LoggingReader(window=4096, reserved_output=512)
    graph = create_rlm_graph(model, cache=False, max_output_tokens=512, **budget)
    kinds = Kinds()
    out = graph.invoke({"document": text, "question": QUESTION}, {"callbacks": [kinds]})
    # The whole document was counted (planned) before the first call of any kind.
    assert model.counted_before("read") >= len(text) * 0.95
    assert model.log.index("read") < model.log.index("other")
    assert "read_ahead" not in kinds.kinds
    assert all(fact in out["answer"] for fact in facts)


def test_focused_reading_does_not_read_ahead(long_document: tuple[str, list[str]]) -> None:
    text, _ = long_document
    _, graph = _small_window_graph(mode="focused")
    kinds = Kinds()
    graph.invoke({"document": text, "question": "What is NEEDLE-0001?"}, {"callbacks": [kinds]})
    assert "read_ahead" not in kinds.kinds
    assert kinds.kinds.get("read", 0) > 0


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_read_made_ahead_that_fails_is_retried_by_its_part(
    long_document: tuple[str, list[str]], mode: str
) -> None:
    text, facts = long_document
    failed: list[str] = []

    def fail_once(prompt: str, number: int) -> BaseException | None:
        if "<document_part start=" in prompt and facts[0] in prompt and not failed:
            failed.append(prompt)
            return TimeoutError("read timed out")
        return None

    model = PerfectReader(window=4096, reserved_output=512, fail=fail_once)
    graph = create_rlm_graph(model, cache=False, max_output_tokens=512, retry_policy=FAST_RETRY)
    out = await _run(graph, {"document": text, "question": QUESTION}, {}, mode)
    assert failed, "the failing read was not made"
    assert model.prompts.count(failed[0]) == 2  # made ahead, failed, then made again by its part
    assert out["errors"] == []
    assert all(fact in out["answer"] for fact in facts)


async def test_a_cancelled_run_cancels_the_reads_made_ahead(long_document: tuple[str, list[str]]) -> None:
    text, _ = long_document
    model = PerfectReader(window=4096, reserved_output=512, delay=0.2)
    graph = create_rlm_graph(model, cache=False, max_output_tokens=512, max_concurrency=2)
    run = asyncio.create_task(graph.ainvoke({"document": text, "question": QUESTION}))
    while not model.prompts:
        await asyncio.sleep(0.01)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await asyncio.sleep(0.05)
    made = len(model.prompts)
    await asyncio.sleep(0.6)
    # Nothing was started after the cancellation settled, and no read made ahead is left running.
    assert len(model.prompts) == made
    assert made < 10
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert leftover == []


def test_no_read_is_made_ahead_when_the_tree_cannot_fit_max_depth(long_document: tuple[str, list[str]]) -> None:
    text, _ = long_document
    model, graph = _small_window_graph(max_depth=0)
    with pytest.raises(DepthLimitError):
        graph.invoke({"document": text, "question": QUESTION})
    assert model.prompts == []


def test_planning_events_come_before_the_split_is_done(long_document: tuple[str, list[str]]) -> None:
    text, _ = long_document
    _, graph = _small_window_graph()
    events = [
        event
        for event in graph.stream({"document": text, "question": QUESTION}, stream_mode="custom")
        if event.get("type") == "progress" and event["stage"] == "split" and event["depth"] == 0
    ]
    ahead = [event for event in events if event["message"].startswith("Planned ")]
    assert len(ahead) >= 2
    assert [event["done"] for event in ahead] == sorted(event["done"] for event in ahead)
    assert all(0 < event["done"] <= event["total"] == len(text) for event in ahead)
    done = next(index for index, event in enumerate(events) if event["status"] == "done")
    assert events.index(ahead[-1]) < done


# The planner and the store ------------------------------------------------------------------------


def test_streamed_leaves_tile_the_text_and_match_the_whole_plan(long_document: tuple[str, list[str]]) -> None:
    text, _ = long_document
    counted: list[int] = []

    def count_many(texts):  # type: ignore[no-untyped-def]
        counted.append(sum(len(t) for t in texts))
        return COUNTER.count_many(texts)

    batches = []
    for batch in stream_leaves(text, part_tokens=3000, count_many=count_many):
        batches.append((batch, sum(counted)))
    leaves = [leaf for batch, _ in batches for leaf in batch]
    assert leaves[0].start == 0
    assert leaves[-1].end == len(text)
    assert all(a.end == b.start for a, b in itertools.pairwise(leaves))
    assert all(leaf.tokens <= 3000 for leaf in leaves)
    assert all(batch for batch, _ in batches)
    assert leaves == plan_leaves(text, part_tokens=3000, count_many=COUNTER.count_many)
    # The first leaves come out after a sliver of the text was counted.
    assert batches[0][1] < len(text) / 20
    assert len(batches) >= 4


def test_a_released_run_cancels_what_it_holds() -> None:
    pending = PendingReads()
    executor = pending.executor(1)
    blocker = threading.Event()
    running = executor.submit(blocker.wait, 5)
    queued = executor.submit(lambda: "never")
    assert pending.hold(("a",), running)
    assert pending.hold(("b",), queued)
    assert not pending.hold(("b",), concurrent.futures.Future())  # one call per key
    pending.cancel()
    assert queued.cancelled()
    late: concurrent.futures.Future[str] = concurrent.futures.Future()
    assert not pending.hold(("c",), late)
    assert late.cancelled()
    assert pending.take(("a",)) is None
    # A starter that comes after the release gets no new threads.
    with pytest.raises(RuntimeError, match="released"):
        pending.executor(1)
    blocker.set()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_reads_made_ahead_are_traced_under_split(long_document: tuple[str, list[str]], mode: str) -> None:
    text, _ = long_document
    _, graph = _small_window_graph()
    tracer = RunNames()
    await _run(graph, {"document": text, "question": QUESTION}, {"callbacks": [tracer]}, mode)
    ahead = [(name, tags, meta) for name, tags, meta in tracer.models if meta.get("rlm_kind") == "read_ahead"]
    assert ahead
    for name, tags, meta in ahead:
        assert name == f"read ahead {meta['rlm_span'][0]}-{meta['rlm_span'][1]}"
        assert "nostream" in tags
    assert tracer.ancestry(ahead[0][0])[0] == "split"


def test_read_ahead_can_be_turned_off(long_document: tuple[str, list[str]]) -> None:
    text, _ = long_document
    model = LoggingReader(window=4096, reserved_output=512)
    graph = create_rlm_graph(model, cache=False, max_output_tokens=512, read_ahead=False)
    kinds = Kinds()
    graph.invoke({"document": text, "question": QUESTION}, {"callbacks": [kinds]})
    assert "read_ahead" not in kinds.kinds
    assert model.counted_before("read") >= len(text) * 0.95
    with pytest.raises(TypeError, match="read_ahead must be True or False"):
        create_rlm_graph(model, read_ahead="yes")  # type: ignore[arg-type]


def test_chunk_overlap_plans_first(long_document: tuple[str, list[str]]) -> None:
    # Overlapping leaves are extended backwards over their neighbours' units, which a
    # section-by-section plan does not keep; such runs plan the whole document first.
    text, facts = long_document
    _, graph = _small_window_graph(chunk_overlap=200)
    kinds = Kinds()
    out = graph.invoke({"document": text, "question": QUESTION}, {"callbacks": [kinds]})
    assert "read_ahead" not in kinds.kinds
    assert all(fact in out["answer"] for fact in facts)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_reads_made_ahead_are_cached_and_a_repeat_run_makes_no_call(
    long_document: tuple[str, list[str]], mode: str
) -> None:
    text, facts = long_document
    model, graph = _small_window_graph(cache=None)
    first = await _run(graph, {"document": text, "question": QUESTION}, {}, mode)
    calls = len(model.prompts)
    second = await _run(graph, {"document": text, "question": QUESTION}, {}, mode)
    assert len(model.prompts) == calls
    assert second["usage"]["llm_calls"] == 0
    assert second["usage"]["cached_calls"] == first["usage"]["llm_calls"]
    assert second["answer"] == first["answer"]
    assert all(fact in second["answer"] for fact in facts)


@pytest.mark.parametrize("separator", [" ", ""])
def test_a_text_without_breaks_is_planned_in_sections_too(separator: str) -> None:
    # One line, no sentence ends (and, with "", not even spaces): sections end within a
    # leaf's length of their target, at a word break or inside a word.
    words = ["alpha", "beta", "gamma", "delta", "omega"] * 60_000
    text = separator.join(words)
    batches = list(stream_leaves(text, part_tokens=2000, count_many=COUNTER.count_many))
    leaves = [leaf for batch in batches for leaf in batch]
    assert len(batches) >= 4
    assert leaves[0].start == 0
    assert leaves[-1].end == len(text)
    assert all(a.end == b.start for a, b in itertools.pairwise(leaves))
    assert all(COUNTER.count(text[leaf.start : leaf.end]) <= 2000 for leaf in leaves)
    # About as few leaves as the token count allows.
    assert len(leaves) <= COUNTER.count(text) / 2000 * 1.15 + 1

"""A run's shared resources (which hold the whole document) are released however the run ends."""

import asyncio
import gc
import tracemalloc
from collections.abc import Callable

import pytest
from langgraph.graph import START, StateGraph
from rlm_graph.state import RLMInput, RLMOutput

from rlm_graph import AllPartsFailedError, BudgetExceededError, DepthLimitError, create_rlm_graph, runs
from tests.fakes import PerfectReader

RUNS = 100
QUESTION = "What is in it?"


class HangingReader(PerfectReader):
    """Never replies (async): a run on it only ends when it is cancelled. Counts calls, keeps no prompt."""

    calls: int = 0

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[no-untyped-def]
        self.calls += 1
        await asyncio.sleep(3600)
        raise AssertionError


class RefusingReader(PerfectReader):
    """Fails every call for good, keeping no record of the prompts (which would look like a leak)."""

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[no-untyped-def]
        msg = "400 bad request"
        raise ValueError(msg)


def _document(frankenstein: str) -> str:
    return frankenstein[:20_000]


def _held() -> tuple[int, int]:
    with runs._registry_lock:
        return len(runs._registry), sum(len(r.text or "") for r in runs._registry.values())


def _growth(action: Callable[[], None]) -> int:
    """Bytes still allocated after ``action``, once garbage is collected."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        action()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_failed_runs_release_their_document(frankenstein: str) -> None:
    document = _document(frankenstein)
    small = PerfectReader(window=2048, reserved_output=256)
    too_deep = create_rlm_graph(small, max_depth=0, max_fanout=2, max_output_tokens=256, cache=False)
    over_budget = create_rlm_graph(small, max_llm_calls=2, max_output_tokens=256, cache=False)
    broken = create_rlm_graph(
        RefusingReader(window=2048, reserved_output=256),
        max_output_tokens=256,
        cache=False,
    )
    expected = {too_deep: DepthLimitError, over_budget: BudgetExceededError, broken: AllPartsFailedError}

    def fail_many(runs_: int = RUNS) -> None:
        for number in range(runs_):
            graph = list(expected)[number % 3]
            with pytest.raises(expected[graph]):
                graph.invoke({"document": document, "question": QUESTION})

    fail_many(6)  # warm up: imports, tokenizer, LangGraph's own caches
    assert _held() == (0, 0)
    grown = _growth(fail_many)
    assert _held() == (0, 0)
    # A leak would keep one document (and more) per run: 100 runs would hold megabytes.
    assert grown < 5 * len(document), grown


def test_cancelled_runs_release_their_document(frankenstein: str) -> None:
    document = _document(frankenstein)
    model = HangingReader(window=2048, reserved_output=256)
    graph = create_rlm_graph(model, max_output_tokens=256, cache=False)

    async def cancel_many(runs_: int = RUNS) -> None:
        for _ in range(runs_):
            seen = model.calls
            run = asyncio.create_task(graph.ainvoke({"document": document, "question": QUESTION}))
            while model.calls == seen:  # the run is reading: its text is held
                await asyncio.sleep(0.001)
            assert _held()[1] == len(document)
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run

    asyncio.run(cancel_many(3))
    assert _held() == (0, 0)
    grown = _growth(lambda: asyncio.run(cancel_many()))
    assert _held() == (0, 0)
    assert grown < 5 * len(document), grown


def test_cached_answers_release_their_run() -> None:
    model = PerfectReader()
    graph = create_rlm_graph(model)
    note = "A short note: NEEDLE-0001 is ABC."
    for _ in range(RUNS):
        out = graph.invoke({"document": note, "question": QUESTION})
        assert "NEEDLE-0001 is ABC" in out["answer"]
    assert len(model.prompts) == 1  # the other 99 came from the cache
    assert _held() == (0, 0)


async def test_a_run_inside_a_parent_graph_is_released_and_nested_levels_keep_it(frankenstein: str) -> None:
    """Nested levels of a run share the root's entry; the root's end releases it, in a parent graph too."""
    document = frankenstein[:60_000]
    texts_seen: list[int] = []

    class Watching(PerfectReader):
        def _answer(self, messages):  # type: ignore[no-untyped-def]
            texts_seen.append(_held()[1])
            return super()._answer(messages)

    rlm = create_rlm_graph(Watching(window=2048, reserved_output=256), max_output_tokens=256, cache=False)
    class ParentState(RLMInput, RLMOutput):
        pass

    parent = StateGraph(ParentState, input_schema=RLMInput, output_schema=RLMOutput)
    parent.add_node("rlm", rlm)
    parent.add_edge(START, "rlm")
    out = await parent.compile().ainvoke({"document": document, "question": QUESTION})
    assert out["usage"]["max_depth"] >= 1
    # Every call, at every depth, found the run's text: no nested level released it early.
    assert texts_seen
    assert set(texts_seen) == {len(document)}
    assert _held() == (0, 0)

"""At most max_concurrency model calls in flight per run, across all depths together."""

from rlm_graph import RLMContext, create_rlm_graph
from tests.fakes import PerfectReader

QUESTION = "List every NEEDLE code."


async def test_cap_holds_across_depths(frankenstein: str) -> None:
    model = PerfectReader(delay=0.05)
    graph = create_rlm_graph(model, max_concurrency=3)
    out = await graph.ainvoke({"document": frankenstein, "question": QUESTION})
    assert out["usage"]["max_depth"] == 1
    # Reached, so the parts really ran in parallel, and never exceeded.
    assert model.max_in_flight == 3


async def test_context_overrides_the_cap(frankenstein: str) -> None:
    model = PerfectReader(delay=0.05)
    graph = create_rlm_graph(model, max_concurrency=8)
    await graph.ainvoke({"document": frankenstein, "question": QUESTION}, context=RLMContext(max_concurrency=2))
    assert model.max_in_flight == 2


def test_cap_holds_for_sync_runs(frankenstein: str) -> None:
    model = PerfectReader(delay=0.05)
    graph = create_rlm_graph(model, max_concurrency=2)
    graph.invoke({"document": frankenstein, "question": QUESTION})
    assert model.max_in_flight == 2


async def test_separate_runs_have_separate_caps(frankenstein: str) -> None:
    import asyncio

    model = PerfectReader(delay=0.05)
    graph = create_rlm_graph(model, max_concurrency=2)
    await asyncio.gather(*(graph.ainvoke({"document": frankenstein, "question": QUESTION}) for _ in range(2)))
    assert 2 < model.max_in_flight <= 4

"""Checkpointers, repeated questions on one thread, and the cache."""

from langgraph.cache.memory import InMemoryCache
from langgraph.checkpoint.memory import InMemorySaver

from rlm_graph import create_rlm_graph
from tests.fakes import PerfectReader, plant_needles
from tests.helpers import collect

QUESTION = "List every NEEDLE code."


async def test_second_question_on_a_thread_starts_clean(frankenstein: str) -> None:
    text, facts, _ = plant_needles(frankenstein, 6)
    graph = create_rlm_graph(PerfectReader(), checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "chat-1"}}
    first = await graph.ainvoke({"document": text, "question": QUESTION}, config)
    second = await graph.ainvoke({"document": frankenstein[:50_000], "question": QUESTION}, config)
    assert all(fact in first["answer"] for fact in facts)
    assert not any(fact in second["answer"] for fact in facts)
    assert second["usage"]["llm_calls"] < first["usage"]["llm_calls"]
    assert all(c["end"] <= 50_000 for c in second["citations"])


def test_sync_run_with_checkpointer(frankenstein: str) -> None:
    text, facts, _ = plant_needles(frankenstein, 6)
    graph = create_rlm_graph(PerfectReader(), checkpointer=InMemorySaver())
    out = graph.invoke({"document": text, "question": QUESTION}, {"configurable": {"thread_id": "t"}})
    assert all(fact in out["answer"] for fact in facts)
    assert out["usage"]["max_depth"] == 1


async def test_cache_makes_repeat_reading_free(frankenstein: str) -> None:
    text, _, _ = plant_needles(frankenstein, 6)
    model = PerfectReader()
    graph = create_rlm_graph(model, cache=InMemoryCache())
    first, _ = await collect(graph, {"document": text, "question": QUESTION})
    calls_first = len(model.prompts)
    second, events = await collect(graph, {"document": text, "question": QUESTION})
    calls_second = len(model.prompts) - calls_first
    assert second["answer"] == first["answer"]
    assert second["citations"] == first["citations"]
    # Every call, syntheses included, comes from the cache; every read part says so.
    assert calls_second == 0
    cached = [e for e in events if e.get("status") == "cached"]
    reads_first_run = sum(1 for prompt in model.prompts if '<finding id="' not in prompt)
    assert len(cached) == reads_first_run
    assert all(e["depth"] == 1 for e in cached)
    last_by_scope = {tuple(e["scope"]): e for e in cached}
    assert all(e["done"] == e["total"] for e in last_by_scope.values())
    assert second["usage"]["llm_calls"] == 0
    assert second["usage"]["cached_calls"] == calls_first
    assert second["usage"]["cached_parts"] == reads_first_run


async def test_partial_failures_are_not_replayed_from_the_cache(frankenstein: str) -> None:
    text = frankenstein[:60_000] + "POISONED-SPAN " + frankenstein[60_000:]
    attempts: list[int] = []

    def fail_once(prompt: str, _: int) -> BaseException | None:
        if "POISONED-SPAN" in prompt and '<finding id="' not in prompt and not attempts:
            attempts.append(1)
            return ValueError("a bad moment")
        return None

    graph = create_rlm_graph(PerfectReader(fail=fail_once))
    first = await graph.ainvoke({"document": text, "question": QUESTION})
    second = await graph.ainvoke({"document": text, "question": QUESTION})
    assert len(first["errors"]) == 1
    assert second["errors"] == []


async def test_cache_is_keyed_by_question(frankenstein: str) -> None:
    model = PerfectReader()
    graph = create_rlm_graph(model, cache=InMemoryCache())
    await graph.ainvoke({"document": frankenstein, "question": QUESTION})
    before = len(model.prompts)
    await graph.ainvoke({"document": frankenstein, "question": "Another question about NEEDLE codes?"})
    assert len(model.prompts) - before > 10


async def test_sqlite_cache_is_shared_across_graph_instances(frankenstein: str, tmp_path) -> None:
    from langgraph.cache.sqlite import SqliteCache

    text, facts, _ = plant_needles(frankenstein, 6)
    first_model, second_model = PerfectReader(), PerfectReader()
    path = str(tmp_path / "cache.sqlite")
    first = await create_rlm_graph(first_model, cache=SqliteCache(path=path)).ainvoke(
        {"document": text, "question": QUESTION}
    )
    # A new graph and a new cache object on the same file, as another worker process would have.
    second = await create_rlm_graph(second_model, cache=SqliteCache(path=path)).ainvoke(
        {"document": text, "question": QUESTION}
    )
    assert second["answer"] == first["answer"]
    assert all(fact in second["answer"] for fact in facts)
    assert len(first_model.prompts) > 10
    assert len(second_model.prompts) == 0


async def test_cache_can_be_turned_off(frankenstein: str) -> None:
    model = PerfectReader()
    graph = create_rlm_graph(model, cache=False)
    await graph.ainvoke({"document": frankenstein[:60_000], "question": QUESTION})
    calls = len(model.prompts)
    await graph.ainvoke({"document": frankenstein[:60_000], "question": QUESTION})
    assert len(model.prompts) == 2 * calls

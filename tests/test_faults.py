"""Real HTTP with injected faults: ChatOpenAI against the local server."""

import pytest
from langchain_openai import ChatOpenAI
from langgraph.types import RetryPolicy

from rlm_graph import create_rlm_graph, is_transient_error
from tests.fakes import insert_at_paragraph, plant_needles
from tests.openai_server import ChatServer, Faults

QUESTION = "List every NEEDLE code."
POISON = "POISONED-SPAN"
RETRY = RetryPolicy(initial_interval=0.05, max_interval=0.2, max_attempts=6, retry_on=is_transient_error)


def model_for(server: ChatServer, timeout: float = 1.0) -> ChatOpenAI:
    # The client's own retries are off so every retry is the graph's, and visible.
    return ChatOpenAI(model="local", base_url=server.base_url, api_key="x", max_retries=0, timeout=timeout)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_twenty_percent_transient_faults_still_give_the_full_answer(frankenstein: str, seed: int) -> None:
    text, facts, _ = plant_needles(frankenstein, 25, seed=seed)
    with ChatServer(faults=Faults(rate=0.2, seed=seed, retry_after="0", hang_seconds=5)) as server:
        graph = create_rlm_graph(model_for(server), context_window=8192, retry_policy=RETRY)
        out = await graph.ainvoke({"document": text, "question": QUESTION})
    outcomes = [r.outcome for r in server.log]
    faults = [o for o in outcomes if o != "200"]
    assert len(faults) >= 0.1 * len(outcomes)
    assert out["errors"] == []
    assert all(fact in out["answer"] for fact in facts)
    assert out["usage"]["llm_calls"] == outcomes.count("200")


async def test_context_length_400_is_not_retried(frankenstein: str) -> None:
    text, facts, _ = plant_needles(frankenstein, 20)
    text, position = insert_at_paragraph(text, POISON, 200_000)
    with ChatServer(faults=Faults(marker=POISON, marker_kind="context")) as server:
        graph = create_rlm_graph(model_for(server), context_window=8192, retry_policy=RETRY)
        out = await graph.ainvoke({"document": text, "question": QUESTION})
    poisoned = [r for r in server.log if r.outcome == "400"]
    assert len(poisoned) == 1
    assert len(out["errors"]) == 1
    assert "context" in out["errors"][0]["error"].lower()
    start, end = out["errors"][0]["start"], out["errors"][0]["end"]
    assert start <= position < end
    outside = [fact for fact in facts if not start <= text.index(fact) < end]
    assert outside
    assert all(fact in out["answer"] for fact in outside)


async def test_a_span_that_always_fails_is_reported_and_siblings_survive(frankenstein: str) -> None:
    text, facts, _ = plant_needles(frankenstein, 20)
    text, position = insert_at_paragraph(text, POISON, 100_000)
    with ChatServer(faults=Faults(marker=POISON, marker_kind="503")) as server:
        graph = create_rlm_graph(model_for(server), context_window=8192, retry_policy=RETRY)
        out = await graph.ainvoke({"document": text, "question": QUESTION})
    assert [r.outcome for r in server.log].count("503") == RETRY.max_attempts
    (error,) = out["errors"]
    assert error["start"] <= position < error["end"]
    assert "503" in error["error"] or "InternalServerError" in error["error"]
    outside = [fact for fact in facts if not error["start"] <= text.index(fact) < error["end"]]
    assert all(fact in out["answer"] for fact in outside)


async def test_retry_waits_as_long_as_retry_after_says() -> None:
    with ChatServer(faults=Faults(first=1, first_kind="429", retry_after="1.5")) as server:
        quick = RetryPolicy(
            initial_interval=0.01, max_interval=0.01, max_attempts=3, jitter=False, retry_on=is_transient_error
        )
        graph = create_rlm_graph(model_for(server), context_window=8192, retry_policy=quick)
        out = await graph.ainvoke({"document": "NEEDLE-0001 is BRIEF.", "question": QUESTION})
    first, second = server.log[:2]
    assert first.outcome == "429"
    assert second.outcome == "200"
    assert first.prompt_hash == second.prompt_hash
    assert second.started - first.finished >= 1.5
    assert "NEEDLE-0001 is BRIEF" in out["answer"]

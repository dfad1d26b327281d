"""Budgets: an estimate before spending, a clear stop or a partial answer, never overspending."""

from collections.abc import Callable

import pytest
from langchain_core.exceptions import ModelRateLimitError
from langgraph.types import RetryPolicy

from rlm_graph import (
    AllPartsFailedError,
    BudgetExceededError,
    DepthLimitError,
    RLMContext,
    create_rlm_graph,
    estimate_cost,
    is_transient_error,
)
from tests.fakes import PerfectReader, first_attempts_fail, plant_needles
from tests.helpers import collect

QUESTION = "List every NEEDLE code."


async def test_estimate_matches_the_run(frankenstein: str) -> None:
    text, _, _ = plant_needles(frankenstein, 30)
    model = PerfectReader()
    graph = create_rlm_graph(model)
    estimate = estimate_cost(graph, text, QUESTION)
    out = await graph.ainvoke({"document": text, "question": QUESTION})
    reads = [p for p in model.prompts if "<document_part start=" in p]
    assert estimate["reads"] == len(reads)
    assert estimate["max_depth"] == out["usage"]["max_depth"] == 1
    assert out["usage"]["llm_calls"] <= estimate["llm_calls"]
    assert out["usage"]["input_tokens"] <= estimate["input_tokens"]
    assert estimate["input_tokens"] < 1.3 * out["usage"]["input_tokens"]


def test_estimate_of_a_short_document_is_one_call() -> None:
    graph = create_rlm_graph(PerfectReader())
    assert estimate_cost(graph, "A short note.", "What?") == {
        "llm_calls": 1,
        "input_tokens": estimate_cost(graph, "A short note.", "What?")["input_tokens"],
        "reads": 1,
        "max_depth": 0,
    }
    with pytest.raises(TypeError, match="create_rlm_graph"):
        estimate_cost(object(), "x", "y")  # type: ignore[arg-type]


async def test_over_budget_stops_before_spending(frankenstein: str) -> None:
    model = PerfectReader()
    graph = create_rlm_graph(model, max_llm_calls=5)
    with pytest.raises(BudgetExceededError, match=r"needs about \d+ model calls.*max_llm_calls=5"):
        await graph.ainvoke({"document": frankenstein, "question": QUESTION})
    assert model.prompts == []


async def test_partial_answers_from_what_the_budget_covers(frankenstein: str) -> None:
    text, facts, offsets = plant_needles(frankenstein, 30)
    model = PerfectReader()
    graph = create_rlm_graph(model)
    full = estimate_cost(graph, text, QUESTION)
    budget = full["llm_calls"] // 2
    out, events = await collect(
        graph,
        {"document": text, "question": QUESTION},
        context=RLMContext(max_llm_calls=budget, on_budget="partial"),
    )
    assert len(model.prompts) <= budget
    assert out["usage"]["llm_calls"] <= budget
    assert out["errors"]
    assert all("skipped to stay within the budget" in e["error"] for e in out["errors"])
    first_skipped = min(e["start"] for e in out["errors"])
    read = [f for f, o in zip(facts, offsets, strict=True) if o < first_skipped]
    unread = [f for f, o in zip(facts, offsets, strict=True) if o >= first_skipped]
    assert read
    assert unread
    assert all(f in out["answer"] for f in read)
    assert not any(f in out["answer"] for f in unread)
    assert [e for e in events if e.get("stage") == "split" and e["status"] == "failed"]


async def test_token_budget_is_never_exceeded(frankenstein: str) -> None:
    model = PerfectReader()
    graph = create_rlm_graph(model, max_input_tokens=40_000, on_budget="partial")
    out = await graph.ainvoke({"document": frankenstein, "question": QUESTION})
    assert 0 < out["usage"]["input_tokens"] <= 40_000


async def test_retries_cannot_push_a_run_over_budget(frankenstein: str) -> None:
    text, _, _ = plant_needles(frankenstein[:150_000], 5)
    graph_for_estimate = create_rlm_graph(PerfectReader())
    exact = estimate_cost(graph_for_estimate, text, QUESTION)["llm_calls"]
    model = PerfectReader(fail=first_attempts_fail(lambda: ModelRateLimitError("429")))
    retry = RetryPolicy(initial_interval=0.01, max_attempts=3, retry_on=is_transient_error)
    graph = create_rlm_graph(model, max_llm_calls=exact, retry_policy=retry)
    # Refused reads fail their parts (the synthesis keeps its reserved call; here every
    # first attempt fails, so the retries may leave nothing to answer from).
    try:
        out = await graph.ainvoke({"document": text, "question": QUESTION})
        reasons = [error["error"] for error in out["errors"]]
    except (BudgetExceededError, AllPartsFailedError) as exc:
        reasons = [str(exc)]
    assert any("max_llm_calls" in reason for reason in reasons)
    # Every attempt counts, failed ones included: the model never saw more calls than the budget.
    assert len(model.prompts) <= exact


def _one_transient_failure(number_to_fail: int) -> Callable[[str, int], BaseException | None]:
    def fail(_: str, number: int) -> BaseException | None:
        return TimeoutError("read timed out") if number == number_to_fail else None

    return fail


@pytest.mark.parametrize(
    ("on_budget", "budget"),
    [("partial", "max_llm_calls"), ("error", "max_llm_calls"), ("partial", "max_input_tokens")],
)
def test_a_retry_cannot_starve_the_synthesis(frankenstein: str, on_budget: str, budget: str) -> None:
    text, facts, offsets = plant_needles(frankenstein[:60_000], 3)
    probe = create_rlm_graph(PerfectReader(window=4096, reserved_output=512), max_output_tokens=512)
    planned = estimate_cost(probe, text, QUESTION)
    model = PerfectReader(window=4096, reserved_output=512, fail=_one_transient_failure(2))
    retry = RetryPolicy(initial_interval=0.01, max_attempts=3, retry_on=is_transient_error)
    graph = create_rlm_graph(
        model,
        max_output_tokens=512,
        cache=False,
        retry_policy=retry,
        on_budget=on_budget,  # type: ignore[arg-type]
        **{budget: planned["llm_calls"] if budget == "max_llm_calls" else planned["input_tokens"]},
    )
    out = graph.invoke({"document": text, "question": QUESTION})
    # The retry took a call the plan did not count: one read is refused, not the synthesis.
    assert len(model.prompts) == planned["llm_calls"]
    assert '<finding id="' in model.prompts[-1]
    (refused,) = out["errors"]
    assert "reserved for the synthesis" in refused["error"]
    assert budget in refused["error"]
    read = [f for f, o in zip(facts, offsets, strict=True) if not refused["start"] <= o < refused["end"]]
    assert read
    assert all(fact in out["answer"] for fact in read)


def test_escalations_and_retries_share_one_ledger() -> None:
    from rlm_graph.runs import RunResources

    ledger = RunResources(4, max_llm_calls=5)
    ledger.reserve(calls=4, tokens=0, synthesis_calls=1, synthesis_tokens=0)
    assert ledger.allow_unplanned(10)  # the plan (4) leaves one call: an escalation may take it
    assert not ledger.allow_unplanned(10)
    for _ in range(4):
        ledger.spend(10)  # reads, retries and escalations alike
    with pytest.raises(BudgetExceededError, match="reserved for the synthesis"):
        ledger.spend(10)
    ledger.spend(10, synthesis=True)  # the reserved call is still there
    assert ledger.llm_calls == 5


async def test_budget_and_depth_errors_carry_structured_fields(frankenstein: str) -> None:
    graph = create_rlm_graph(PerfectReader(), max_llm_calls=5)
    with pytest.raises(BudgetExceededError) as budget:
        await graph.ainvoke({"document": frankenstein, "question": QUESTION})
    assert (budget.value.budget, budget.value.limit) == ("max_llm_calls", 5)
    assert budget.value.needed is not None
    assert budget.value.needed > 5
    deep = create_rlm_graph(PerfectReader(), max_depth=0)
    with pytest.raises(DepthLimitError) as depth:
        await deep.ainvoke({"document": frankenstein, "question": QUESTION})
    assert depth.value.max_depth == 0
    assert depth.value.levels is not None
    assert depth.value.levels > 0

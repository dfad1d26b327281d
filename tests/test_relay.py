"""Relay: the small model reads, the large model re-reads only what the small one flags."""

from __future__ import annotations

import re

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from rlm_graph.state import merge_usage

from rlm_graph import create_rlm_graph, estimate_cost
from rlm_graph.relay import CONFIDENCE_INSTRUCTION, split_confidence
from tests.fakes import NEEDLE, PerfectReader, plant_needles
from tests.helpers import collect

QUESTION = "List every NEEDLE code and the word it stands for."
MURKY = "MURKY"


class SmallReader(PerfectReader):
    """Reads like the perfect reader, but garbles the facts of parts holding MURKY and says so."""

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        result = super()._answer(messages)
        prompt = "\n".join(m.text for m in messages)
        if "<document_part start=" not in prompt:
            return result
        text = result.generations[0].message.text
        if MURKY in prompt:
            text = NEEDLE.sub(lambda m: m.group(0).split(" is ")[0] + " is GARBLED", text) + "\nCONFIDENCE: low"
        else:
            text += "\n**Confidence:** High"
        return ChatResult(generations=[ChatGeneration(message=AIMessage(text))])


class LargeReader(PerfectReader):
    """The perfect reader under another name (so its identity differs), with a marker of its own."""

    @property
    def _llm_type(self) -> str:
        return "large-perfect-reader"

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        result = super()._answer(messages)
        prompt = "\n".join(m.text for m in messages)
        if "<document_part start=" not in prompt:
            return result
        text = result.generations[0].message.text + "\nCONFIDENCE: high"
        return ChatResult(generations=[ChatGeneration(message=AIMessage(text))])


def murky_document(text: str, murky: list[int]) -> tuple[str, list[str]]:
    """Mark the chosen needles' sentences MURKY; return the text and all facts."""
    planted, facts, _ = plant_needles(text, 12)
    for index in murky:
        planted = planted.replace(facts[index], f"{MURKY} {facts[index]}")
    return planted, facts


def read_prompts(model: PerfectReader) -> list[str]:
    return [p for p in model.prompts if "<document_part start=" in p]


@pytest.mark.parametrize("use_async", [True, False])
async def test_exactly_the_flagged_parts_are_escalated(frankenstein: str, use_async: bool) -> None:
    text, facts = murky_document(frankenstein[:150_000], murky=[2, 7])
    small, large = SmallReader(), LargeReader()
    prices = {"model": (0.1, 0.4), "large_model": (2.0, 8.0)}
    graph = create_rlm_graph(small, large_model=large, prices=prices)
    payload = {"document": text, "question": QUESTION}
    if use_async:
        out, events = await collect(graph, payload)
    else:
        out = graph.invoke(payload)
        events = []

    flagged = [p for p in read_prompts(small) if MURKY in p]
    assert len(flagged) == 2
    # The large model read exactly the flagged parts, nothing else.
    assert sorted(read_prompts(large)) == sorted(flagged)
    assert all(CONFIDENCE_INSTRUCTION.strip() in p for p in read_prompts(small))
    # The answer carries the large model's reading for them, and no marker line.
    assert [f for f in facts if f not in out["answer"]] == []
    assert "GARBLED" not in out["answer"]
    assert "CONFIDENCE" not in out["answer"].upper()
    assert "Confidence" not in out["answer"]

    usage = out["usage"]
    synthesis_calls = len(large.prompts) - len(flagged)
    assert synthesis_calls >= 1
    assert usage["escalated_parts"] == 2
    assert usage["by_model"]["model"]["llm_calls"] == len(small.prompts)
    assert usage["by_model"]["large_model"]["llm_calls"] == len(large.prompts)
    assert usage["llm_calls"] == len(small.prompts) + len(large.prompts)
    by_model = usage["by_model"]
    tokens = {role: c["input_tokens"] + c["output_tokens"] for role, c in by_model.items()}
    assert usage["large_model_share"] == pytest.approx(tokens["large_model"] / sum(tokens.values()))
    assert 0 < usage["large_model_share"] < 0.5
    expected_cost = sum(
        (by_model[role]["input_tokens"] * price[0] + by_model[role]["output_tokens"] * price[1]) / 1e6
        for role, price in prices.items()
    )
    assert usage["cost"] == pytest.approx(expected_cost)
    if use_async:
        escalated = [e for e in events if e.get("message", "").endswith("the large model reads it again")]
        assert len(escalated) == 2
        assert all(text[e["span"][0] : e["span"][1]].count(MURKY) == 1 for e in escalated)
        final = [e for e in events if e["type"] == "usage" and e["depth"] == 0][-1]
        assert final["by_model"] == usage["by_model"]
        assert final["cost"] == pytest.approx(usage["cost"])


async def test_plain_text_reader_without_marker_never_escalates(frankenstein: str) -> None:
    text, facts, _ = plant_needles(frankenstein[:120_000], 6)
    small, large = PerfectReader(), LargeReader()
    out = await create_rlm_graph(small, large_model=large).ainvoke({"document": text, "question": QUESTION})
    assert read_prompts(large) == []
    assert len(large.prompts) >= 1  # the synthesis
    assert all("<finding" in p for p in large.prompts)
    assert out["usage"].get("escalated_parts", 0) == 0
    assert [f for f in facts if f not in out["answer"]] == []


async def test_short_document_is_answered_by_the_large_model() -> None:
    small, large = SmallReader(), LargeReader()
    graph = create_rlm_graph(small, large_model=large)
    out = await graph.ainvoke({"document": "NEEDLE-0001 is ALPHA. Nothing else.", "question": QUESTION})
    assert small.prompts == []
    assert len(large.prompts) == 1
    assert out["usage"]["by_model"] == {"large_model": {"llm_calls": 1, **_tokens(out["usage"])}}
    assert out["usage"]["large_model_share"] == 1.0


def _tokens(usage: dict) -> dict:
    return {"input_tokens": usage["input_tokens"], "output_tokens": usage["output_tokens"]}


async def test_escalation_never_breaks_the_call_budget(frankenstein: str) -> None:
    text, _ = murky_document(frankenstein[:150_000], murky=[1, 4, 9])
    probe = create_rlm_graph(SmallReader(), large_model=LargeReader())
    planned = estimate_cost(probe, text, QUESTION)["llm_calls"]
    small, large = SmallReader(), LargeReader()
    graph = create_rlm_graph(small, large_model=large, max_llm_calls=planned + 1)
    out = await graph.ainvoke({"document": text, "question": QUESTION})
    # One escalation fits the headroom; the others keep the small reading, and the
    # synthesis, which the plan counted, still has its call.
    assert out["usage"]["escalated_parts"] == 1
    assert len(small.prompts) + len(large.prompts) <= planned + 1
    assert out["usage"]["llm_calls"] <= planned + 1
    flagged = [p for p in read_prompts(small) if MURKY in p]
    assert len(flagged) >= 2
    kept_right = [p for p in flagged if all(f in out["answer"] for f in NEEDLE.findall(p))]
    assert len(kept_right) == 1
    assert read_prompts(large) == kept_right


async def test_cache_keys_separate_small_only_and_relay_runs(frankenstein: str) -> None:
    from langgraph.cache.memory import InMemoryCache

    text, _ = murky_document(frankenstein[:120_000], murky=[3])
    cache = InMemoryCache()
    small = SmallReader()
    first = await create_rlm_graph(small, cache=cache).ainvoke({"document": text, "question": QUESTION})
    assert "GARBLED" in first["answer"]
    large = LargeReader()
    second = await create_rlm_graph(SmallReader(), large_model=large, cache=cache).ainvoke(
        {"document": text, "question": QUESTION}
    )
    # A cached small-only finding must not come back in a relay run.
    assert read_prompts(large)
    assert "GARBLED" not in second["answer"]


def test_confidence_marker_is_only_our_last_line() -> None:
    assert split_confidence("A is B.\nCONFIDENCE: low") == ("A is B.", 0.3)
    assert split_confidence("A\n**Confidence:** High") == ("A", 0.9)
    assert split_confidence("A\n- Confidence: medium.\n\n") == ("A", 0.6)
    assert split_confidence("NO_RELEVANT_INFORMATION") == ("NO_RELEVANT_INFORMATION", None)
    # Content, not our marker: numbers, other wording, or a marker that is not the last line.
    assert split_confidence("Sample size: 1,204.\nConfidence level: 95%") == (
        "Sample size: 1,204.\nConfidence level: 95%",
        None,
    )
    assert split_confidence("A\nconfidence = 40%")[1] is None
    assert split_confidence("CONFIDENCE: low\nA is B.") == ("CONFIDENCE: low\nA is B.", None)
    assert split_confidence("Her confidence: high, said the letter, was misplaced.")[1] is None


def test_usage_merge_sums_per_model_and_derives_share_and_cost() -> None:
    a = {"llm_calls": 1, "by_model": {"model": {"llm_calls": 1, "input_tokens": 90, "output_tokens": 10, "cost": 1.0}}}
    b = {"llm_calls": 1, "by_model": {"large_model": {"llm_calls": 1, "input_tokens": 20, "output_tokens": 5}}}
    c = {"by_model": {"large_model": {"llm_calls": 1, "input_tokens": 70, "output_tokens": 5, "cost": 2.5}}}
    merged = merge_usage(merge_usage(a, b), merge_usage({}, c))
    assert merged["llm_calls"] == 2
    assert merged["by_model"]["large_model"] == {"llm_calls": 2, "input_tokens": 90, "output_tokens": 10, "cost": 2.5}
    assert merged["large_model_share"] == pytest.approx(0.5)
    assert merged["cost"] == pytest.approx(3.5)
    # A nested level's derived fields are recomputed, not added.
    again = merge_usage(merged, {"large_model_share": 0.9, "cost": 100.0})
    assert again["large_model_share"] == pytest.approx(0.5)
    assert again["cost"] == pytest.approx(3.5)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"large_model": "gpt-4o"}, "large_model must be a LangChain BaseChatModel"),
        ({"large_model": LargeReader(), "escalate_below": 1.5}, "escalate_below must be a confidence"),
        ({"large_model": LargeReader(), "prices": {"model": (1, 2)}}, r"no entry for \['large_model'\]"),
        ({"prices": {"small": (1, 2)}}, "prices must map"),
        ({"prices": {"model": (1,)}}, "must be two or three numbers"),
        ({"prices": {"model": (1, 2, 0.5, 9)}}, "must be two or three numbers"),
        ({"prices": {"model": (1, 2, -0.5)}}, "must not be negative"),
        ({"prices": {"model": (-1, 2)}}, "must not be negative"),
    ],
)
def test_bad_relay_options_fail_at_build_time(options: dict, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        create_rlm_graph(PerfectReader(), **options)


def test_plan_uses_the_smaller_window() -> None:
    from rlm_graph.estimate import settings_of

    graph = create_rlm_graph(PerfectReader(window=32768), large_model=LargeReader(window=8192))
    assert settings_of(graph).context_window == 8192
    assert re.search(r"LargeReader", settings_of(graph).identity_of("large_model"))

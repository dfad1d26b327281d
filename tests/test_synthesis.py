"""Synthesis never overflows, even when findings are far longer than the output budget."""

from rlm_graph import create_rlm_graph
from tests.fakes import PerfectReader, VerboseReader, plant_needles
from tests.helpers import collect

QUESTION = "List every NEEDLE code."


async def test_long_findings_are_combined_in_groups(frankenstein: str) -> None:
    text, facts, _ = plant_needles(frankenstein, 40)
    model = VerboseReader(filler_words=1500)
    out, events = await collect(create_rlm_graph(model), {"document": text, "question": QUESTION})
    assert model.overflows == 0
    assert out["errors"] == []
    assert all(fact in out["answer"] for fact in facts)
    grouping = [e for e in events if e.get("stage") == "synthesis" and e["status"] == "processing"]
    assert grouping


async def test_a_finding_larger_than_the_window_is_shortened_and_reported(frankenstein: str) -> None:
    text, facts, _ = plant_needles(frankenstein[:60_000], 4)
    model = VerboseReader(filler_words=9000)
    out = await create_rlm_graph(model).ainvoke({"document": text, "question": QUESTION})
    assert model.overflows == 0
    assert out["errors"]
    assert all("truncated" in error["error"] for error in out["errors"])
    assert all(fact in out["answer"] for fact in facts)


async def test_irrelevant_findings_are_dropped(frankenstein: str) -> None:
    text, facts, offsets = plant_needles(frankenstein, 1)
    model = PerfectReader()
    out = await create_rlm_graph(model).ainvoke({"document": text, "question": QUESTION})
    synthesis_prompts = [p for p in model.prompts if '<finding id="' in p]
    assert synthesis_prompts
    assert all("NO_RELEVANT_INFORMATION\n</finding>" not in p for p in synthesis_prompts)
    assert out["answer"].startswith(facts[0])
    assert len(out["citations"]) == 1
    assert out["citations"][0]["start"] <= offsets[0] < out["citations"][0]["end"]


async def test_a_five_megabyte_word_terminates() -> None:
    document = "x" * 2_000_000 + "NEEDLE-0001 is ZED." + "y" * 3_000_000
    model = PerfectReader()
    out = await create_rlm_graph(model).ainvoke({"document": document, "question": QUESTION})
    assert model.overflows == 0
    assert out["errors"] == []
    assert out["usage"]["max_depth"] >= 1


async def test_short_nested_findings_go_up_without_a_call(frankenstein: str) -> None:
    text, facts, offsets = plant_needles(frankenstein, 40)
    model = PerfectReader()
    out = await create_rlm_graph(model).ainvoke({"document": text, "question": QUESTION})
    assert out["usage"]["max_depth"] == 1
    synthesis_prompts = [p for p in model.prompts if '<finding id="' in p]
    assert len(synthesis_prompts) == 1  # only the top level's
    assert all(fact in out["answer"] for fact in facts)
    # Citations still point at the leaf parts, not at whole nested levels.
    assert all(any(c["start"] <= o < c["end"] for c in out["citations"]) for o in offsets)
    assert max(c["end"] - c["start"] for c in out["citations"]) < 40_000

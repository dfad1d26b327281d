"""Facts planted anywhere in long documents must all reach the answer, with no overflow."""

import pytest

from rlm_graph import create_rlm_graph
from rlm_graph.tokens import TiktokenCounter
from tests.fakes import PerfectReader, plant_needles
from tests.helpers import collect, covered

QUESTION = "List every NEEDLE code and the word it stands for."


def build_document(books: list[str], tokens: int) -> str:
    counter = TiktokenCounter()
    parts, total = [], 0
    while total < tokens:
        for book in books:
            parts.append(book)
            total += counter.count(book)
            if total >= tokens:
                break
    return "\n\n".join(parts)


async def run_needles(document: str, needles: int, window: int = 8192) -> None:
    text, facts, offsets = plant_needles(document, needles)
    model = PerfectReader(window=window, reserved_output=1024)
    graph = create_rlm_graph(model, max_output_tokens=1024)
    out, events = await collect(graph, {"document": text, "question": QUESTION})
    assert model.overflows == 0
    assert out["errors"] == []
    missing = [fact for fact in facts if fact not in out["answer"]]
    assert missing == []
    assert all(covered(offset, out["citations"]) for offset in offsets)
    assert all(text[c["start"] : c["end"]] for c in out["citations"])
    assert out["usage"]["llm_calls"] == len(model.prompts)
    assert out["usage"]["max_depth"] >= 1
    assert any(e["depth"] >= 1 for e in events)


async def test_needles_in_100k_tokens(frankenstein: str) -> None:
    await run_needles(frankenstein, needles=40)


@pytest.mark.slow
async def test_needles_in_1m_tokens(frankenstein: str, pride: str, kalevala: str) -> None:
    document = build_document([frankenstein, kalevala, pride], 1_000_000)
    await run_needles(document, needles=120)


async def test_short_document_goes_direct() -> None:
    model = PerfectReader()
    graph = create_rlm_graph(model)
    out, events = await collect(graph, {"document": "NEEDLE-0001 is ALPHA. Nothing else here.", "question": QUESTION})
    assert "NEEDLE-0001 is ALPHA" in out["answer"]
    assert len(model.prompts) == 1
    assert out["usage"]["llm_calls"] == 1
    assert [e["stage"] for e in events if e["type"] == "progress"] == ["check", "check", "direct", "direct"]


async def test_nothing_relevant_gives_clear_answer(frankenstein: str) -> None:
    graph = create_rlm_graph(PerfectReader())
    out, _ = await collect(graph, {"document": frankenstein[:100_000], "question": QUESTION})
    assert "does not appear to contain" in out["answer"]
    assert out["citations"] == []

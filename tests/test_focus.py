"""Focused reading: the most relevant parts first, stop when answered, full read for aggregation."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Sequence

import pytest
from langchain_core.embeddings import Embeddings

from rlm_graph import BM25Retriever, RLMContext, VectorStoreRetriever, create_rlm_graph
from rlm_graph.auto_mode import decide_mode
from rlm_graph.focus import split_complete
from tests.fakes import PerfectReader, plant_needles
from tests.helpers import LoopTurns, collect
from tests.test_events import check_bars, check_shapes


def reads(model: PerfectReader) -> list[str]:
    return [p for p in model.prompts if "<document_part start=" in p]


def events_of(events: list[dict], key_text: str) -> list[dict]:
    return [e for e in events if e["type"] == "progress" and key_text in e["message"]]


@pytest.fixture(scope="module")
def long_text(frankenstein: str, pride: str) -> str:
    return frankenstein + "\n\n" + pride  # about 200K tokens, some 35 parts at an 8K window


@pytest.mark.parametrize("use_async", [True, False])
async def test_needle_is_found_reading_at_most_a_fifth_of_the_parts(long_text: str, use_async: bool) -> None:
    text, facts, _ = plant_needles(long_text, 30, seed=11)
    target = facts[17]
    code = target.split(" is ")[0]
    model = PerfectReader()
    graph = create_rlm_graph(model, mode="focused")
    payload = {"document": text, "question": f"What word does {code} stand for?"}
    if use_async:
        out, events = await collect(graph, payload)
        check_shapes(events)
        check_bars(events)
        assert events_of(events, "Reading mode: focused")
        assert events_of(events, "Relevance index built")
        assert events_of(events, "most relevant of")
    else:
        out = graph.invoke(payload)
    usage = out["usage"]
    assert target in out["answer"]
    assert usage["parts_total"] >= 25
    assert usage["parts_read"] <= 0.2 * usage["parts_total"]
    assert len(reads(model)) == usage["parts_read"]
    assert out["errors"] == []  # parts not read are not errors
    assert any(c["start"] <= text.index(target) < c["end"] for c in out["citations"])


async def test_aggregation_question_in_auto_mode_reads_everything(long_text: str) -> None:
    text, facts, _ = plant_needles(long_text, 25, seed=3)
    model = PerfectReader()
    graph = create_rlm_graph(model, mode="auto")
    out, events = await collect(graph, {"document": text, "question": "List every NEEDLE code."})
    assert events_of(events, "Reading mode: full")
    assert [f for f in facts if f not in out["answer"]] == []
    assert out["usage"]["parts_read"] == out["usage"]["parts_total"]
    check_bars(events)


async def test_targeted_question_in_auto_mode_is_focused(long_text: str) -> None:
    text, facts, _ = plant_needles(long_text, 10, seed=5)
    code = facts[4].split(" is ")[0]
    model = PerfectReader()
    out, events = await collect(
        create_rlm_graph(model, mode="auto", max_concurrency=2), {"document": text, "question": f"What is {code}?"}
    )
    assert events_of(events, "Reading mode: focused (the question looks targeted)")
    assert facts[4] in out["answer"]
    assert out["usage"]["parts_read"] == 2


class CompletenessJudge(PerfectReader):
    """Synthesis says COMPLETE: partly (or no) until its findings hold every code the question names.

    The judging is PerfectReader's own (``completeness``); the class names the role."""


@pytest.mark.parametrize("use_async", [True, False])
async def test_incomplete_answer_reads_another_round(long_text: str, use_async: bool) -> None:
    text, facts, _ = plant_needles(long_text, 30, seed=11)
    a, b = facts[3], facts[26]
    question = f"What do {a.split(' is ')[0]} and {b.split(' is ')[0]} stand for?"
    model = CompletenessJudge()
    graph = create_rlm_graph(model, mode="focused", max_concurrency=1, max_focused_parts=6)
    payload = {"document": text, "question": question}
    if use_async:
        out, events = await collect(graph, payload)
        check_bars(events)
        assert events_of(events, "Reading 1 more part,")
    else:
        out = graph.invoke(payload)
    assert a in out["answer"]
    assert b in out["answer"]
    assert "COMPLETE" not in out["answer"]
    assert 2 <= out["usage"]["parts_read"] <= 6
    syntheses = [p for p in model.prompts if "<finding id=" in p]
    assert len(syntheses) == out["usage"]["parts_read"] - 1 or len(syntheses) >= 2
    assert out["usage"]["llm_calls"] == len(model.prompts)


async def test_budget_stops_an_answer_that_never_completes(long_text: str) -> None:
    class NeverComplete(PerfectReader):
        def completeness(self, prompt: str, facts: list[str]) -> str | None:
            return "partly" if "COMPLETE: yes" in prompt else None

    text, facts, _ = plant_needles(long_text, 30, seed=11)
    model = NeverComplete()
    graph = create_rlm_graph(model, mode="focused", max_concurrency=2, max_focused_parts=5)
    out = await graph.ainvoke({"document": text, "question": f"What is {facts[9].split(' is ')[0]}?"})
    assert out["usage"]["parts_read"] == 5
    assert facts[9] in out["answer"]
    # The cap stopped a reading the synthesis had not called complete: usage and answer say so.
    unread = out["usage"]["parts_total"] - 5
    assert out["usage"]["parts_unread"] == unread
    assert out["usage"]["stopped_early"] == 1
    assert f"Read 5 of {out['usage']['parts_total']} parts, the most relevant; the other {unread} were not read" in (
        out["answer"]
    )


async def test_nothing_relevant_reads_everything_before_saying_so(frankenstein: str) -> None:
    model = PerfectReader()
    graph = create_rlm_graph(model, mode="focused")
    out, events = await collect(graph, {"document": frankenstein, "question": "What is NEEDLE-9999?"})
    assert "does not appear to contain" in out["answer"]
    assert out["usage"]["parts_read"] == out["usage"]["parts_total"]
    assert out["errors"] == []
    check_bars(events)


def _counting_bm25() -> BM25Retriever:
    """A BM25 retriever of a class of its own that counts the indexes it builds (``builds``)."""

    class CountingBM25(BM25Retriever):
        builds = 0

        def build(self, texts: Sequence[str]):
            type(self).builds += 1
            return super().build(texts)

    return CountingBM25()


async def test_follow_up_question_reuses_the_index(long_text: str) -> None:
    text, facts, _ = plant_needles(long_text, 30, seed=11)
    retriever = _counting_bm25()
    graph = create_rlm_graph(PerfectReader(), mode="focused", retriever=retriever)
    first, events_first = await collect(graph, {"document": text, "question": f"What is {facts[1][:11]}?"})
    second, events_second = await collect(graph, {"document": text, "question": f"What is {facts[20][:11]}?"})
    assert facts[1] in first["answer"]
    assert facts[20] in second["answer"]
    assert type(retriever).builds == 1
    assert events_of(events_first, "Relevance index built")
    assert events_of(events_second, "Relevance index reused")
    # A different document builds its own index.
    await graph.ainvoke({"document": text + "\n\nMore.", "question": f"What is {facts[2][:11]}?"})
    assert type(retriever).builds == 2


async def test_an_async_run_keeps_its_loop_turning_while_the_index_is_built(long_text: str) -> None:
    # split plans on the event loop (nodes/entry.py); building the index is one piece of
    # work (about 1 s for 1M tokens) it cannot pause in, so an async run makes it in a thread.
    text, facts, _ = plant_needles(long_text, 30, seed=11)
    turns, during_build = LoopTurns(), []

    class SlowBM25(BM25Retriever):
        def build(self, texts: Sequence[str]):
            before = turns.now
            time.sleep(0.2)  # the cost of a large index, standing in as plain CPU-free waiting
            during_build.append(turns.now - before)
            return super().build(texts)

    graph = create_rlm_graph(PerfectReader(), mode="focused", retriever=SlowBM25())
    async with turns:
        out = await graph.ainvoke({"document": text, "question": f"What is {facts[4][:11]}?"})
    assert facts[4] in out["answer"]
    assert during_build[0] > 10


async def test_an_async_run_tokenizes_the_parts_for_bm25_on_its_loop_part_by_part(long_text: str) -> None:
    # Tokenizing the parts is most of a BM25 build (0.85 s of 1.1 s for a million tokens).
    # In a thread beside a busy loop it waited for the GIL at every turn of the loop
    # (see rlm_graph/steps.py): it is now done on the loop, one part at a time.
    text, facts, _ = plant_needles(long_text, 30, seed=11)
    turns, calls = LoopTurns(), []
    tokenize = BM25Retriever.tokenize

    class NotingBM25(BM25Retriever):
        def tokenize(self, text: str) -> list[str]:
            calls.append((threading.get_ident(), turns.now))
            return tokenize(self, text)

    graph = create_rlm_graph(PerfectReader(), mode="focused", retriever=NotingBM25())
    async with turns:
        out = await graph.ainvoke({"document": text, "question": f"What is {facts[4][:11]}?"})
    assert facts[4] in out["answer"]
    parts = out["usage"]["parts_total"]
    assert {thread for thread, _ in calls} == {threading.get_ident()}
    assert len({turn for _, turn in calls}) >= parts  # a turn of the loop after each part


async def test_per_run_mode_overrides_the_graph(long_text: str) -> None:
    text, facts, _ = plant_needles(long_text, 30, seed=11)
    model = PerfectReader()
    graph = create_rlm_graph(model)  # full by default
    question = {"document": text, "question": f"What is {facts[5][:11]}?"}
    full = await graph.ainvoke(question)
    assert full["usage"]["parts_read"] == full["usage"]["parts_total"]
    focused = await graph.ainvoke(question, context=RLMContext(mode="focused", max_focused_parts=3))
    assert facts[5] in focused["answer"]
    assert focused["usage"]["parts_read"] <= 3


class HashingEmbeddings(Embeddings):
    """Set of words hashed into 4096 dimensions, L2-normalised: deterministic and offline.

    Presence, not counts: common words then weigh the same in every part, and the
    rare words a question shares with one part decide the ranking."""

    def _embed(self, text: str) -> list[float]:
        vector = [0.0] * 4096
        for word in set(re.findall(r"\w+", text.lower())):
            vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % 4096] = 1.0
        norm = sum(v * v for v in vector) ** 0.5 or 1.0
        return [v / norm for v in vector]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._embed(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._embed(text)


async def test_vector_store_retriever_ranks_the_needle_part_first(long_text: str) -> None:
    marker = "NEEDLE-0777 is LIGHTHOUSE."
    position = long_text.index("\n\n", len(long_text) * 2 // 3) + 2
    text = long_text[:position] + marker + " " + long_text[position:]
    model = PerfectReader()
    retriever = VectorStoreRetriever(HashingEmbeddings())
    graph = create_rlm_graph(model, mode="focused", retriever=retriever, max_concurrency=2)
    out = await graph.ainvoke(
        {"document": text, "question": "Which code word is NEEDLE-0777?"}
    )
    assert out["usage"]["parts_read"] <= 0.2 * out["usage"]["parts_total"]
    assert "NEEDLE-0777 is LIGHTHOUSE" in out["answer"]
    assert out["usage"]["parts_read"] == 2


def test_heuristic_decides_aggregation_and_targeted_questions() -> None:
    for question in (
        "List every date in the letters.",
        "Summarize the novel.",
        "How many times does Elizabeth refuse a proposal?",
        "Give a timeline of Victor's travels.",
        "What happens to each of the Bennet sisters?",
    ):
        assert decide_mode(question)[0] == "full", question
    for question in ("What is the captain's phone number?", "Who is Walton's sister?", "Where was Justine tried?"):
        assert decide_mode(question)[0] == "focused", question


def test_completeness_marker_is_parsed_and_stripped() -> None:
    assert split_complete("A is B [F1].\nCOMPLETE: no") == ("A is B [F1].", "no")
    assert split_complete("A is B.\n**Complete:** Yes") == ("A is B.", "yes")
    assert split_complete("A is B.\nCOMPLETE: partly") == ("A is B.", "partly")
    assert split_complete("A is B.") == ("A is B.", None)
    # Only the last line is the verdict: an earlier one is content.
    assert split_complete("Complete: yes, said the log.\nA is B.") == ("Complete: yes, said the log.\nA is B.", None)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"mode": "fast"}, ValueError, "mode must be one of"),
        ({"mode": "focused", "max_focused_parts": 0}, ValueError, "max_focused_parts must be a count"),
        ({"mode": "focused", "max_focused_parts": 1.5}, ValueError, "max_focused_parts must be a count"),
        ({"mode": "focused", "retriever": object()}, TypeError, "retriever must have"),
        ({"index_cache_size": 0}, ValueError, "index_cache_size"),
    ],
)
def test_bad_focus_options_fail_at_build_time(options: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        create_rlm_graph(PerfectReader(), **options)


def test_bad_per_run_mode_fails_early() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        RLMContext(mode="quick")  # type: ignore[arg-type]


def test_vector_retriever_needs_embeddings() -> None:
    with pytest.raises(TypeError, match="embeddings must be a LangChain Embeddings"):
        VectorStoreRetriever("text-embedding-3-small")  # type: ignore[arg-type]


@pytest.mark.slow
async def test_needle_in_1m_tokens_reads_at_most_a_fifth(frankenstein: str, pride: str, kalevala: str) -> None:
    from tests.test_needles import build_document

    text, facts, _ = plant_needles(build_document([frankenstein, kalevala, pride], 1_000_000), 1, seed=2)
    model = PerfectReader()
    graph = create_rlm_graph(model, mode="auto")
    out, events = await collect(graph, {"document": text, "question": f"What is {facts[0][:11]}?"})
    assert facts[0] in out["answer"]
    assert out["usage"]["parts_total"] >= 100
    assert out["usage"]["parts_read"] <= 0.2 * out["usage"]["parts_total"]
    assert len(reads(model)) == out["usage"]["parts_read"]
    assert model.overflows == 0
    check_bars(events)


async def test_chat_node_reuses_the_index_across_turns(long_text: str) -> None:
    from langchain_core.messages import HumanMessage
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import START, StateGraph

    from rlm_graph import DocumentChatState, create_document_node

    text, facts, _ = plant_needles(long_text, 30, seed=11)
    model = PerfectReader()
    retriever = _counting_bm25()
    analysis = create_rlm_graph(model, mode="focused", retriever=retriever)
    builder = StateGraph(DocumentChatState)
    builder.add_node("analyse", create_document_node(model, analysis))
    builder.add_edge(START, "analyse")
    chat = builder.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    first = await chat.ainvoke({"messages": [HumanMessage(f"What is {facts[3][:11]}?")], "document": text}, config)
    assert facts[3] in first["messages"][-1].text
    second = await chat.ainvoke({"messages": [HumanMessage(f"What is {facts[22][:11]}?")]}, config)
    assert facts[22] in second["messages"][-1].text
    assert type(retriever).builds == 1


def test_bm25_ranks_as_a_bm25s_index_of_the_same_words(frankenstein: str, kalevala: str) -> None:
    # The index keeps each part's word counts and scores a question when it is asked, so
    # that no step of the build holds an event loop (bm25s builds its score matrix in one
    # piece). The ranking must stay bm25s' own (its default method, Lucene's BM25).
    import bm25s
    from bm25s.tokenization import Tokenized

    retriever = BM25Retriever()
    text, facts, _ = plant_needles(frankenstein[:200_000] + "\n\n" + kalevala[:100_000], 30)
    size = len(text) // 40 + 1
    parts = [text[start : start + size] for start in range(0, len(text), size)]
    parts.append("the and of")  # a part of stopwords only: no words at all
    vocabulary: dict[str, int] = {}
    ids = [[vocabulary.setdefault(word, len(vocabulary)) for word in retriever.tokenize(part)] for part in parts]
    reference = bm25s.BM25(k1=retriever.k1, b=retriever.b)
    reference.index(Tokenized(ids=ids, vocab=vocabulary), show_progress=False)
    index = retriever.build(parts)
    words = sorted(vocabulary)
    questions = [f"What is {fact.split(' is ')[0]}?" for fact in facts]
    questions += ["Victor Frankenstein and the creature", "Väinämöinen sings", "monster monster"]
    questions += [" ".join(words[(i * 7919 + k * 104729) % len(words)] for k in range(1 + i % 5)) for i in range(60)]
    scored = 0
    for question in questions:
        if not (tokens := retriever.tokenize(question)):
            continue  # bm25s cannot score a question without words
        scores = reference.get_scores(tokens)
        expected = sorted(range(len(parts)), key=lambda i: -float(scores[i]))
        assert index.rank(question) == expected, question
        scored += 1
    assert scored >= 80
    assert index.rank("What does it do?") == list(range(len(parts)))  # stopwords only: document order


def test_question_words_do_not_decide_the_ranking(frankenstein: str, kalevala: str) -> None:
    # With bm25s' 33-word list, "what", "which" and "does" were not stopwords: frequent in
    # every English part and absent from the Finnish ones, they outranked a question's one
    # rare word. On this document 13 of 40 codes ranked their own part first.
    retriever = BM25Retriever()
    assert retriever.tokenize("What does it stand for? Which one, and why did they?") == ["stand", "one"]
    text, facts, _ = plant_needles(frankenstein + "\n\n" + kalevala[:300_000], 40)
    size = len(text) // 14 + 1
    parts = [text[start : start + size] for start in range(0, len(text), size)]
    index = retriever.build(parts)
    first = 0
    for fact in facts:
        code = fact.split(" is ")[0]
        holding = [number for number, part in enumerate(parts) if fact in part]
        first += index.rank(f"What word does {code} stand for?")[0] in holding
    assert first >= len(facts) // 2


def test_a_code_is_a_term_of_its_own(frankenstein: str, kalevala: str) -> None:
    # A code's pieces ("needle", "0007") recur across the document; only the whole code
    # names one place. Before codes were terms, "word" and "stand" (frequent in the
    # English parts) outranked the part holding the code for 18 of these 40 questions.
    retriever = BM25Retriever()
    assert retriever.tokenize("Invoice INV-2024-0042, v1.5, a well-known case.") == [
        "invoice",
        "inv",
        "2024",
        "0042",
        "v1",
        "5",
        "well",
        "known",
        "case",
        "inv-2024-0042",
        "v1.5",
    ]
    text, facts, _ = plant_needles(frankenstein + "\n\n" + kalevala[:300_000], 40)
    size = len(text) // 14 + 1
    parts = [text[start : start + size] for start in range(0, len(text), size)]
    index = retriever.build(parts)
    for fact in facts:
        code = fact.split(" is ")[0]
        holding = [number for number, part in enumerate(parts) if fact in part]
        assert index.rank(f"What word does {code} stand for?")[0] in holding, code

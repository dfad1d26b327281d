"""Navigate mode: a scripted tool-calling root model explores the document with tools."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from rlm_graph import create_rlm_graph
from tests.fakes import PerfectReader, ScriptedReader, insert_at_paragraph, part_text
from tests.navigator_fakes import ScriptedNavigator, TallyReader, call, calls, spans_in, tool_results

BOOK = (Path(__file__).parent / "data" / "frankenstein.txt").read_text()[:120_000]
TOOL_NAMES = {"search", "grep", "peek", "ask", "ask_all", "final"}


def _graph(navigator: ScriptedNavigator, **kwargs: Any) -> Any:
    options = {"context_window": navigator.window, "part_tokens": 2048, "cache": False, "mode": "navigate"}
    return create_rlm_graph(navigator, **{**options, **kwargs})


def _last_result(messages: list[BaseMessage]) -> str:
    return tool_results(messages)[-1]


def _final_from_last(messages: list[BaseMessage]) -> AIMessage:
    found = re.findall(r"NEEDLE-\d{4} is [A-Z]+", _last_result(messages))
    return AIMessage(
        "", tool_calls=[call("final", answer="; ".join(found), citations=spans_in(_last_result(messages)))]
    )


def _ask_grep_hits(messages: list[BaseMessage]) -> AIMessage:
    hits = spans_in(_last_result(messages))
    # Read a window around each hit.
    spans = [[max(0, start - 500), end + 500] for start, end in hits]
    return AIMessage("", tool_calls=[call("ask", question="What is NEEDLE-0042?", spans=spans)])


def needle_document() -> tuple[str, int]:
    return insert_at_paragraph(BOOK, "NEEDLE-0042 is QUASAR.", 70_000)


def test_needle_found_by_grep_then_confirmed_by_ask() -> None:
    document, position = needle_document()
    reader = PerfectReader(window=8192)
    navigator = ScriptedNavigator(
        reader=reader, script=[calls(call("grep", pattern=r"NEEDLE-\d+")), _ask_grep_hits, _final_from_last]
    )
    result = _graph(navigator).invoke({"document": document, "question": "What is NEEDLE-0042?"})
    answer, note = result["answer"].split("\n\n")
    assert answer == "NEEDLE-0042 is QUASAR"
    # The answer rests on about a thousand characters around the hit: it says so.
    read = result["usage"]["chars_read"]
    assert 0 < read <= 1100
    assert note.startswith("The navigator read <1% of the document (characters ")
    assert note.endswith("the rest was only searched, not read, so the answer may miss what it holds.")
    assert {tool["function"]["name"] for tool in navigator.bound_tools} == TOOL_NAMES
    # The root model never saw the document: its first prompt is the question, sizes and outline.
    first = "\n".join(m.text for m in navigator.root_prompts[0])
    assert "QUASAR" not in first
    assert f"{len(document)} characters" in first
    assert "characters 0-" in first  # the outline, with the parts' headings
    assert re.search(r"tokens\): (Letter|Chapter) \d+ \(at \d+\)", first), first
    assert any(c["start"] <= position < c["end"] for c in result["citations"])
    # One reader call for the ask, three root calls: far from a full read.
    assert len(reader.prompts) == 1
    assert result["usage"]["llm_calls"] == 4
    assert not result["errors"]


def test_tool_schemas_match_the_contract() -> None:
    navigator = ScriptedNavigator(reader=PerfectReader(), script=[])
    _graph(navigator)
    params = {
        tool["function"]["name"]: set(tool["function"]["parameters"]["properties"]) for tool in navigator.bound_tools
    }
    assert params == {
        "search": {"query", "k"},
        "grep": {"pattern", "max_hits"},
        "peek": {"start", "end"},
        "ask": {"question", "spans"},
        "ask_all": {"question", "output"},
        "final": {"answer", "citations"},
    }


@pytest.mark.parametrize("use_async", [False, True])
async def test_multi_hop_needs_two_ask_rounds(use_async: bool) -> None:
    document, _ = insert_at_paragraph(BOOK, "NEEDLE-0001 is KEYWORDB.", 20_000)
    document, _ = insert_at_paragraph(document, "NEEDLE-0002 is LOCATIONX.", 90_000)

    def second_hop(messages: list[BaseMessage]) -> AIMessage:
        # The first answer names what to look for next.
        assert "NEEDLE-0001 is KEYWORDB" in _last_result(messages)
        return AIMessage("", tool_calls=[call("ask", question="Where is NEEDLE-0002?", spans=[[60_000, 110_000]])])

    navigator = ScriptedNavigator(
        reader=PerfectReader(window=8192),
        script=[
            calls(call("ask", question="What is NEEDLE-0001?", spans=[[0, 40_000]])),
            second_hop,
            _final_from_last,
        ],
    )
    graph, payload = _graph(navigator), {"document": document, "question": "Two hops"}
    result = await graph.ainvoke(payload) if use_async else graph.invoke(payload)
    assert result["answer"].split("\n\n")[0] == "NEEDLE-0002 is LOCATIONX"
    assert result["usage"]["chars_read"] == 90_000  # the two spans asked about, read whole
    assert "The navigator read 75% of the document (characters 0-40000, 60000-110000)" in result["answer"]
    # Each 40K-character span is larger than one call: read by the graph invoked on it.
    assert result["usage"]["max_depth"] >= 1
    assert not result["errors"]


def tally_document(records: int = 3000, keys: int = 1200, seed: int = 3) -> tuple[str, dict[str, int]]:
    import random

    rng = random.Random(seed)
    names = [f"K{index:04d}" for index in range(keys)]
    weights = [1.0 / (rank + 1) for rank in range(keys)]
    lines, truth = [], {}
    for number in range(records):
        key = rng.choices(names, weights)[0]
        truth[key] = truth.get(key, 0) + 1
        lines.append(f"Entry {number}: SALE {key} recorded.")
        if number % 20 == 19:
            lines.append("")
    return "\n".join(lines), truth


@pytest.mark.parametrize("use_async", [False, True])
async def test_aggregation_tally_is_exact(use_async: bool) -> None:
    document, truth = tally_document()
    answers: dict[str, str] = {}

    def answer_from_tally(messages: list[BaseMessage]) -> AIMessage:
        result = _last_result(messages)
        answers["tally"] = result
        top = result.splitlines()[1]
        return AIMessage("", tool_calls=[call("final", answer=f"Most frequent: {top}", citations=[])])

    navigator = ScriptedNavigator(
        reader=TallyReader(window=8192),
        script=[calls(call("ask_all", question="How many sales per key?", output="tally")), answer_from_tally],
    )
    graph = _graph(navigator)
    payload = {"document": document, "question": "Which key has the most sales, and how many?"}
    result = await graph.ainvoke(payload) if use_async else graph.invoke(payload)
    best, count = max(truth.items(), key=lambda item: (item[1], -int(item[0][1:])))
    assert result["answer"] == f"Most frequent: {best}: {count}"  # read whole: no note
    assert result["usage"]["chars_read"] >= len(document.strip()) * 0.99
    head = answers["tally"].splitlines()[0]
    assert head.startswith(f"{len(truth)} distinct keys, {sum(truth.values())} in all")
    # The tally is larger than one window: cut, saying how many entries were left out, and exact where shown.
    assert re.search(r"\.\.\. \d+ more entries left out", answers["tally"])
    for line in answers["tally"].splitlines()[1:-1]:
        key, value = line.split(": ")
        assert truth[key] == int(value)


def test_model_that_never_calls_final_gets_a_caveat() -> None:
    document, _ = needle_document()
    endless = [calls(call("search", query=f"creature night {n}")) for n in range(10)]
    navigator = ScriptedNavigator(reader=PerfectReader(window=8192), script=endless, fallback="Probably Geneva.")
    result = _graph(navigator, max_steps=4).invoke({"document": document, "question": "Where was he born?"})
    assert len(navigator.root_prompts) == 4
    last = navigator.root_prompts[-1][-1].text
    assert "no more tool calls" in last
    # The forced last call still asked for tools, so the scripted model ran out of script.
    assert result["answer"].startswith("The search stopped")


def test_steps_run_out_but_final_answer_comes_with_caveat() -> None:
    document, _ = needle_document()

    def answer_when_told(messages: list[BaseMessage]) -> AIMessage:
        if "no more tool calls" in messages[-1].text:
            return AIMessage("", tool_calls=[call("final", answer="Geneva", citations=[[0, 10]])])
        return AIMessage("", tool_calls=[call("grep", pattern="Geneva")])

    navigator = ScriptedNavigator(reader=PerfectReader(window=8192), script=[answer_when_told] * 5)
    result = _graph(navigator, max_steps=3).invoke({"document": document, "question": "Where was he born?"})
    assert result["answer"].startswith("Geneva\n\nThe search stopped before the model finished (max_steps=3 reached)")
    # A range the model named is a part-level citation (no located quote).
    assert [(c["start"], c["end"], c["kind"]) for c in result["citations"]] == [(0, 10, "part")]


def test_bad_tool_arguments_come_back_as_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    from rlm_graph.navigate import document as navigate_document

    monkeypatch.setattr(navigate_document, "GREP_TIMEOUT_SECONDS", 0.2)
    document, _ = needle_document()
    seen: list[str] = []

    def record(messages: list[BaseMessage]) -> AIMessage:
        seen.extend(str(m.content) for m in messages if isinstance(m, ToolMessage))
        return AIMessage("", tool_calls=[call("final", answer="done", citations=[[-5, 10**9], "x"])])

    navigator = ScriptedNavigator(
        reader=PerfectReader(window=8192),
        script=[
            calls(
                call("peek", start=5, end=10**9),
                call("ask", question="x", spans=[[-1, 5]]),
                call("grep", pattern="(x+x+)+y"),
                call("grep", pattern="(unclosed"),
                call("rm_rf", path="/"),
                call("peek", start="zero", end=3),
            ),
            record,
        ],
    )
    document += "x" * 3000
    result = _graph(navigator).invoke({"document": document, "question": "q"})
    assert result["answer"].split("\n\n")[0] == "done"
    assert "The navigator read none of the document's text" in result["answer"]
    assert "out of range" in seen[0]
    assert "out of range" in seen[1]
    assert "took more than 0.2s" in seen[2]
    assert "not a valid regular expression" in seen[3]
    assert "rm_rf is not a valid tool" in seen[4]
    assert "valid integer" in seen[5]
    # Citations outside the document are clipped; junk is dropped.
    assert [(c["start"], c["end"], c["kind"]) for c in result["citations"]] == [(0, len(document), "part")]


@pytest.mark.parametrize("bm25", [True, False])
def test_search_finds_the_span_with_or_without_bm25(bm25: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not bm25:
        import rlm_graph.options

        def missing() -> None:
            raise ImportError("no bm25s")

        monkeypatch.setattr(rlm_graph.options, "default_retriever", missing)
    document, position = insert_at_paragraph(BOOK, "The zeppelin quartermaster hid the emerald.", 60_000)
    results: list[str] = []

    def record(messages: list[BaseMessage]) -> AIMessage:
        results.append(_last_result(messages))
        return AIMessage("", tool_calls=[call("final", answer="ok", citations=[])])

    navigator = ScriptedNavigator(
        reader=PerfectReader(window=8192),
        script=[calls(call("search", query="zeppelin quartermaster emerald", k=3)), record],
    )
    _graph(navigator).invoke({"document": document, "question": "Where is the emerald?"})
    start, end = spans_in(results[0])[0]
    assert start <= position < end
    assert "score=3" in results[0].splitlines()[1]
    assert "zeppelin quartermaster" in results[0]


def test_count_and_list_merge_exactly_in_code() -> None:
    from rlm_graph.navigate.aggregate import merge, parse_reply, render
    from rlm_graph.tokens import TiktokenCounter

    counts = [parse_reply("count", reply) for reply in ("12", "1,204.", "NONE", "0")]
    assert merge("count", counts) == 1216
    # Replies not in the asked form are refused, never guessed (tests/test_navigate_strict.py).
    with pytest.raises(ValueError, match="not one integer"):
        parse_reply("count", "There are 1,204.")
    lists = [parse_reply("list", reply) for reply in ("- Alice\n- Bob", "NONE", "1. Bob\n2. Carol")]
    assert merge("list", lists) == ["Alice", "Bob", "Carol"]
    tallies = [parse_reply("tally", reply) for reply in ("a: 2\n- b: 1", "`a`: 3", "NONE")]
    assert merge("tally", tallies) == {"a": 5, "b": 1}
    text = render("tally", {f"k{i}": i for i in range(2000)}, 200, TiktokenCounter())
    assert text.splitlines()[1] == "k1999: 1999"
    assert re.search(r"\.\.\. (\d+) more entries left out", text)


def test_the_answer_says_what_was_read_and_what_failed() -> None:
    # The root model answers from what its tools returned; the answer says how little
    # that was, and which span could not be read at all.
    document, _ = insert_at_paragraph(BOOK, "POISON", 30_000)

    def reply(prompt: str, kind: str) -> str:
        if "POISON" in part_text(prompt):
            raise ValueError("the provider refused this part")
        return "Nothing about it here."

    navigator = ScriptedNavigator(
        reader=ScriptedReader(reply=reply, window=8192),
        script=[
            calls(call("ask", question="What is POISON?", spans=[[20_000, 25_000], [28_000, 33_000]])),
            calls(call("final", answer="It is not explained.", citations=[])),
        ],
    )
    result = _graph(navigator).invoke({"document": document, "question": "What is POISON?"})
    answer, notes = result["answer"].split("\n\n")
    assert answer == "It is not explained."
    assert result["usage"]["chars_read"] == 5_000
    assert "1 part of the document could not be read (characters 28000-33000" in notes
    assert "The navigator read 4% of the document (characters 20000-25000)" in notes


def test_a_second_question_on_a_thread_has_read_nothing_yet() -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    document, _ = needle_document()
    navigator = ScriptedNavigator(
        reader=TallyReader(window=8192),
        script=[
            calls(call("ask_all", question="How many SALE records?", output="count")),
            calls(call("final", answer="none", citations=[])),
            calls(call("final", answer="from memory", citations=[])),
        ],
    )
    graph = _graph(navigator, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "two-questions"}}
    first = graph.invoke({"document": document, "question": "How many sales?"}, config)
    assert first["answer"] == "none"  # the whole document was read: no note
    second = graph.invoke({"document": document, "question": "And now?"}, config)
    assert second["answer"].startswith("from memory\n\nThe navigator read none of the document's text")
    assert second["usage"]["chars_read"] == 0

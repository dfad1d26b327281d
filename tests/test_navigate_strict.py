"""Navigate mode reads what the models wrote, or says it could not: tool arguments, root replies, ask_all replies."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_openai import ChatOpenAI

from rlm_graph import create_rlm_graph
from rlm_graph.navigate.aggregate import UnparsedReplyError, parse_reply
from rlm_graph.prompts import NO_ANSWER_MESSAGE, NO_RELEVANT_INFORMATION
from tests.fakes import NEEDLE, PerfectReader
from tests.navigator_fakes import (
    ScriptedNavigator,
    TallyReader,
    call,
    calls,
    sales_document,
    spans_in,
    tool_results,
)
from tests.openai_server import ChatServer
from tests.test_navigate import needle_document


def _graph(navigator: ScriptedNavigator, **kwargs: Any) -> Any:
    options = {"context_window": navigator.window, "part_tokens": 2048, "cache": False, "mode": "navigate"}
    return create_rlm_graph(navigator, **{**options, **kwargs})


async def _run(graph: Any, payload: dict[str, Any], use_async: bool) -> dict[str, Any]:
    return await graph.ainvoke(payload) if use_async else graph.invoke(payload)


def _final(answer: str) -> Any:
    return lambda _messages: AIMessage("", tool_calls=[call("final", answer=answer, citations=[])])


# r28: a blank span is reported to the root model, never a crash.


@pytest.mark.parametrize("use_async", [False, True])
async def test_ask_on_blank_spans_says_there_is_nothing_to_read(use_async: bool) -> None:
    document, _ = needle_document()
    # A stretch of blank lines larger than one reading call (page layout, padding), and a small one.
    large = "\n" * 5 + (" " * 79 + "\n") * 2500
    small = "\n" + " " * 300 + "\n"
    document = document[:30_000] + large + document[30_000:60_000] + small + document[60_000:]
    large_span = [30_000, 30_000 + len(large)]
    small_start = 60_000 + len(large)
    small_span = [small_start, small_start + len(small)]
    needle = document.index("NEEDLE-0042")
    navigator = ScriptedNavigator(
        reader=PerfectReader(window=8192),
        script=[
            calls(
                call(
                    "ask",
                    question="What is NEEDLE-0042?",
                    spans=[large_span, small_span, [needle - 300, needle + 300]],
                )
            ),
            _final("NEEDLE-0042 is QUASAR"),
        ],
    )
    out = await _run(_graph(navigator), {"document": document, "question": "What is NEEDLE-0042?"}, use_async)
    result = tool_results(navigator.root_prompts[-1])[-1]
    assert f"nothing to read in characters {large_span[0]}-{large_span[1]}" in result
    assert f"nothing to read in characters {small_span[0]}-{small_span[1]}" in result
    assert "NEEDLE-0042 is QUASAR" in result  # the other span is read as usual
    assert out["answer"].startswith("NEEDLE-0042 is QUASAR")
    assert not out["errors"]


# ask_all: count and tally replies are read strictly (r22).


@pytest.mark.parametrize(
    ("reply", "value"),
    [("12", 12), ("1,204", 1204), (" 7.\n", 7), ("`3`", 3), ("**4**", 4), ("NONE", 0), ("0", 0)],
)
def test_a_count_reply_that_is_one_integer_is_read(reply: str, value: int) -> None:
    assert parse_reply("count", reply) == value


@pytest.mark.parametrize(
    "reply",
    ["Chapter 12 has 5.", "There are 1,204.", "several", "five", "3 or 4", "-2", "12\n5", "", "about 40"],
)
def test_a_count_reply_that_is_not_one_integer_is_unparsed(reply: str) -> None:
    with pytest.raises(UnparsedReplyError, match="one integer"):
        parse_reply("count", reply)


def test_tally_lines_are_read_strictly() -> None:
    assert parse_reply("tally", "a: 2\n- b: 1\n`c`: 3\n* \"d e\": 4.") == {"a": 2, "b": 1, "c": 3, "d e": 4}
    assert parse_reply("tally", "```\na: 2\na: 1\n```") == {"a": 3}
    assert parse_reply("tally", "NONE") == {}
    assert parse_reply("tally", "time: 10:30: 2") == {"time: 10:30": 2}
    for reply in ("K0001: 3 times", "a: 2\nnoise line", "Here are the counts:\na: 2", "a - 3", "a: -1", ""):
        with pytest.raises(UnparsedReplyError, match="`key: number`"):
            parse_reply("tally", reply)


def test_list_replies_are_read_per_line() -> None:
    assert parse_reply("list", "- Alice\n- Bob") == ["Alice", "Bob"]
    assert parse_reply("list", "1. Bob\n2) Carol\nNONE") == ["Bob", "Carol"]
    assert parse_reply("list", "NONE") == []
    assert parse_reply("list", "Note: the ledger\n- Time: 10:30") == ["Note: the ledger", "Time: 10:30"]
    # A line that introduces the items is not one of them: the reply is asked again, not guessed.
    for reply in ("  \n", "Here are the items I found:\n- Alice\n- Bob", "Items:\nAlice"):
        with pytest.raises(UnparsedReplyError):
            parse_reply("list", reply)


RECORD = re.compile(r"\bSALE (\w+)\b")


class WordyReader(PerfectReader):
    """Counts exactly, and words its replies the way chat models often do (r22)."""

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        prompt = "\n".join(m.text for m in messages)
        part = re.search(r"<document_part[^>]*>\n(.*)\n</document_part>", prompt, re.DOTALL).group(1)
        found = RECORD.findall(part)
        if "`key: number`" in prompt:
            reply = "\n".join(f"{key}: {n} times" for key, n in Counter(found).items()) or "NONE"
        else:
            chapter = re.search(r"Chapter (\d+)", part)
            reply = f"Chapter {chapter.group(1)} has {len(found)}." if chapter else str(len(found))
        self._prompts.append(prompt)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(reply))])


def _ask_all_result(reader: Any, output: str, use_async: bool = False) -> tuple[str, dict[str, Any]]:
    document, _ = sales_document()
    navigator = ScriptedNavigator(
        reader=reader,
        script=[calls(call("ask_all", question="How many sales per key?", output=output)), _final("done")],
    )
    graph = _graph(navigator, max_output_tokens=512)
    out = asyncio.run(graph.ainvoke({"document": document, "question": "How many sales?"})) if use_async else (
        graph.invoke({"document": document, "question": "How many sales?"})
    )
    return tool_results(navigator.root_prompts[-1])[-1], out


@pytest.mark.parametrize("output", ["count", "tally"])
def test_ask_all_never_sums_a_reply_it_could_not_read(output: str) -> None:
    reader = WordyReader(window=8192)
    result, out = _ask_all_result(reader, output)
    firsts = [prompt for prompt in reader.prompts if "could not be read" not in prompt]
    parts = len(firsts)
    unparsed = [e for e in out["errors"] if e.get("kind") == "unparsed"]
    # "Chapter 12 has 5." is never 12; "K0001: 3 times" never vanishes into "0 in all".
    chaptered = [e for e in unparsed if e["reply"].startswith("Chapter")] if output == "count" else unparsed
    assert chaptered, out["errors"]
    assert out["usage"]["unparsed_replies"] == len(unparsed)
    # Each was asked once more, with what was wrong and the form expected, before it was given up.
    assert len(reader.prompts) - parts == len(unparsed)
    for error in unparsed:
        assert error["start"] < error["end"]
        assert error["error"]
        assert len(error["reply"]) <= 200
    head = result.splitlines()[0]
    assert head.startswith(f"Incomplete: {len(unparsed)} of {parts} parts could not be read"), result
    spans = ", ".join(f"{e['start']}-{e['end']}" for e in unparsed[:5])
    assert spans in result
    document, truth = sales_document()
    left_out = sum(len(RECORD.findall(document[e["start"] : e["end"]])) for e in unparsed)
    if output == "tally":
        assert "in all" not in result  # no part's tally could be read: nothing is summed
    else:
        # Exact over the parts that could be read, and only those.
        assert parts > len(unparsed)
        assert result.splitlines()[-1] == f"total: {sum(truth.values()) - left_out}"


class CorrectedReader(WordyReader):
    """Words its first reply like WordyReader, and follows the corrective message that comes after it."""

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        if "could not be read" not in messages[-1].text:
            return super()._answer(messages)
        prompt = "\n".join(m.text for m in messages)
        self._prompts.append(prompt)
        found = RECORD.findall(re.search(r"<document_part[^>]*>\n(.*)\n</document_part>", prompt, re.DOTALL).group(1))
        tally = "\n".join(f"{key}: {n}" for key, n in Counter(found).items())
        reply = str(len(found)) if "one integer" in messages[-1].text else tally
        return ChatResult(generations=[ChatGeneration(message=AIMessage(reply))])


@pytest.mark.parametrize("output", ["count", "tally"])
@pytest.mark.parametrize("use_async", [False, True])
def test_ask_all_corrects_a_reply_once_and_stays_exact(output: str, use_async: bool) -> None:
    reader = CorrectedReader(window=8192)
    result, out = _ask_all_result(reader, output, use_async)
    _, truth = sales_document()
    corrected = [prompt for prompt in reader.prompts if "could not be read" in prompt]
    assert corrected  # some replies were worded, and asked again
    assert not out["errors"]
    assert out["usage"].get("unparsed_replies", 0) == 0
    if output == "count":
        assert result == f"total: {sum(truth.values())}"
    else:
        assert result.splitlines()[0] == f"{len(truth)} distinct keys, {sum(truth.values())} in all, largest first:"
        assert {line.split(": ")[0]: int(line.split(": ")[1]) for line in result.splitlines()[1:]} == truth


# The root model's protocol: tool calls, not text (the "seen with a real local model" bullet).


def _grep_then_ask(messages: list[BaseMessage]) -> dict[str, Any]:
    start, end = spans_in(tool_results(messages)[-1])[0]
    return call("ask", question="What is NEEDLE-0042?", spans=[[start - 300, end + 300]])


def _final_call(messages: list[BaseMessage]) -> dict[str, Any]:
    result = tool_results(messages)[-1]
    return call("final", answer="; ".join(NEEDLE.findall(result)), citations=spans_in(result))


def _as_text(form: str, tool_call: dict[str, Any]) -> str:
    """A tool call written in the reply's text, as local models do."""
    plain = {"name": tool_call["name"], "arguments": tool_call["args"]}
    if form == "json":
        return json.dumps(plain)
    if form == "fenced":
        return "```json\n" + json.dumps(plain, indent=2) + "\n```"
    if form == "qwen":  # Qwen2.5's chat template
        return "<tool_call>\n" + json.dumps(plain) + "\n</tool_call>"
    if form == "openai":  # OpenAI's shape, arguments as a JSON string
        function = {"name": plain["name"], "arguments": json.dumps(plain["arguments"])}
        return json.dumps({"type": "function", "function": function})
    return json.dumps([{"name": plain["name"], "parameters": plain["arguments"]}])  # a list, "parameters"


@pytest.mark.parametrize("form", ["json", "fenced", "qwen", "openai", "list"])
async def test_a_tool_call_written_as_text_is_taken_as_that_call(form: str) -> None:
    document, position = needle_document()
    texts: list[str] = []

    def written(make: Callable[[list[BaseMessage]], dict[str, Any]]) -> Callable[[list[BaseMessage]], AIMessage]:
        def step(messages: list[BaseMessage]) -> AIMessage:
            texts.append(_as_text(form, make(messages)))
            return AIMessage(texts[-1])

        return step

    navigator = ScriptedNavigator(
        reader=PerfectReader(window=8192),
        script=[
            written(lambda _m: call("grep", pattern=r"NEEDLE-\d+")),
            written(_grep_then_ask),
            written(_final_call),
        ],
    )
    out = await _run(_graph(navigator), {"document": document, "question": "What is NEEDLE-0042?"}, form == "list")
    assert out["answer"].split("\n\n")[0] == "NEEDLE-0042 is QUASAR"
    assert all(text not in out["answer"] for text in texts)
    assert any(c["start"] <= position < c["end"] for c in out["citations"])
    assert len(navigator.root_prompts) == 3  # each reply was read as its call: no retry was needed
    assert out["usage"]["root_replies_repaired"] == 3
    assert not out["errors"]


@pytest.mark.parametrize("use_async", [False, True])
async def test_a_reply_without_a_tool_call_is_retried_with_a_reminder(use_async: bool) -> None:
    document, _ = needle_document()
    navigator = ScriptedNavigator(
        reader=PerfectReader(window=8192),
        script=[
            lambda _m: AIMessage("Let me look for NEEDLE-0042 in the document first."),
            calls(call("grep", pattern=r"NEEDLE-\d+")),
            lambda m: AIMessage("", tool_calls=[_grep_then_ask(m)]),
            lambda _m: AIMessage("NEEDLE-0042 is QUASAR."),  # the answer as prose, not through final
            lambda m: AIMessage("", tool_calls=[_final_call(m)]),
        ],
    )
    out = await _run(_graph(navigator), {"document": document, "question": "What is NEEDLE-0042?"}, use_async)
    assert out["answer"].split("\n\n")[0] == "NEEDLE-0042 is QUASAR"
    prompts = navigator.root_prompts
    assert len(prompts) == 5
    for retried in (prompts[1], prompts[4]):
        assert isinstance(retried[-2], AIMessage)  # the reply, then the reminder
        assert "no tool call" in retried[-1].text
        assert "final(answer, citations)" in retried[-1].text
    assert out["usage"]["root_replies_repaired"] == 2
    assert out["usage"]["llm_calls"] == 6  # five root calls and one read
    # The system prompt said so from the start.
    assert "never written as text; your answer goes in final" in prompts[0][0].text
    assert not out["errors"]


def _refused_twice(out: dict[str, Any], reply: str) -> None:
    assert NO_RELEVANT_INFORMATION not in out["answer"]
    assert reply not in out["answer"]
    assert "replied without calling a tool, twice" in out["answer"]
    (error,) = [e for e in out["errors"] if e.get("kind") == "unparsed"]
    assert error["reply"] == reply[:200]
    assert "no tool call" in error["error"]
    assert out["usage"]["unparsed_replies"] == 1


@pytest.mark.parametrize(
    "reply",
    [
        NO_RELEVANT_INFORMATION,
        "The answer is probably Geneva.",
        'I will call {"name": "grep", "arguments": {"pattern": "Geneva"}} now.',  # prose around: ambiguous
        '{"name": "lookup", "arguments": {"query": "Geneva"}}',  # no such tool
    ],
)
def test_a_model_that_never_calls_a_tool_is_never_shown_as_the_answer(reply: str) -> None:
    document, _ = needle_document()
    navigator = ScriptedNavigator(reader=PerfectReader(window=8192), script=[], fallback=reply)
    out = _graph(navigator).invoke({"document": document, "question": "Where was he born?"})
    _refused_twice(out, reply)
    assert len(navigator.root_prompts) == 2
    assert "search, grep, peek, ask, ask_all, final" in navigator.root_prompts[1][-1].text


async def test_a_model_served_without_tool_calls_over_http_gets_an_honest_answer() -> None:
    # The local server answers every call like a reader, ignoring the tools it is sent
    # (a model served without tool calling): NO_RELEVANT_INFORMATION to the root prompt.
    document, _ = needle_document()
    with ChatServer(window=8192) as server:
        model = ChatOpenAI(model="qwen-local", base_url=server.base_url, api_key="not-needed", max_retries=0)
        graph = create_rlm_graph(model, context_window=8192, part_tokens=2048, cache=False, mode="navigate")
        out = await graph.ainvoke({"document": document, "question": "What is NEEDLE-0042?"})
    _refused_twice(out, NO_RELEVANT_INFORMATION)
    assert len(server.requests) == 2
    assert "The navigator read none of the document's text" in out["answer"]


@pytest.mark.parametrize("read_all", [True, False])
def test_final_with_the_marker_is_never_the_answer(read_all: bool) -> None:
    document, _ = needle_document()
    first = (
        call("ask_all", question="How many SALE records?", output="count")
        if read_all
        else call("grep", pattern="SALE")
    )
    navigator = ScriptedNavigator(
        reader=TallyReader(window=8192), script=[calls(first), _final(NO_RELEVANT_INFORMATION)]
    )
    graph = _graph(navigator)
    out = graph.invoke({"document": document, "question": "What is sold?"})
    assert NO_RELEVANT_INFORMATION not in out["answer"]
    if read_all:
        assert out["answer"] == NO_ANSWER_MESSAGE
    else:
        assert out["answer"].startswith("Nothing relevant to the question was found in the parts that were read.")
        assert "The navigator read none of the document's text" in out["answer"]


# Spans written as strings or objects.


def test_spans_written_as_text_or_objects_are_read() -> None:
    document, _ = needle_document()
    needle = document.index("NEEDLE-0042")
    a, b = needle - 300, needle + 300
    navigator = ScriptedNavigator(
        reader=PerfectReader(window=8192),
        script=[
            calls(
                call("ask", question="What is NEEDLE-0042?", spans=[f"characters {a}-{b}"]),
                call("ask", question="What is NEEDLE-0042?", spans=[{"start": a, "end": b}]),
                call("ask", question="What is NEEDLE-0042?", spans=f"{a}-{b}"),
                call("ask", question="What is NEEDLE-0042?", spans=[a, b]),
                call("ask", question="What is NEEDLE-0042?", spans=[[str(a), str(b)]]),
                call("peek", start=str(a), end=str(b)),
            ),
            _final("NEEDLE-0042 is QUASAR"),
        ],
    )
    out = _graph(navigator).invoke({"document": document, "question": "What is NEEDLE-0042?"})
    results = tool_results(navigator.root_prompts[-1])
    assert len(results) == 6
    for result in results[:5]:
        assert result == f"[{a}-{b}] NEEDLE-0042 is QUASAR", result
    assert results[5].startswith(f"[characters {a}-{b}]")
    assert out["answer"].startswith("NEEDLE-0042 is QUASAR")


@pytest.mark.parametrize("spans", [["chapter three"], [[1, 2, 3]], "everything", [{"from": 1, "to": 5}], [[True, 5]]])
def test_spans_that_cannot_be_read_are_refused_with_the_form_to_use(spans: Any) -> None:
    document, _ = needle_document()
    navigator = ScriptedNavigator(
        reader=PerfectReader(window=8192),
        script=[calls(call("ask", question="What is NEEDLE-0042?", spans=spans)), _final("unknown")],
    )
    out = _graph(navigator).invoke({"document": document, "question": "What is NEEDLE-0042?"})
    (result,) = tool_results(navigator.root_prompts[-1])
    assert "[start, end]" in result
    assert "[0, 9741]" in result or "characters 0-9741" in result
    assert out["answer"].startswith("unknown")


def test_citations_written_as_text_or_objects_are_read() -> None:
    document, _ = needle_document()
    cited = ["characters 10-20", {"start": 30, "end": 40}, "nonsense", [True, 3], [50, 10**9]]
    navigator = ScriptedNavigator(
        reader=PerfectReader(window=8192),
        script=[lambda _m: AIMessage("", tool_calls=[call("final", answer="done", citations=cited)])],
    )
    out = _graph(navigator).invoke({"document": document, "question": "q"})
    found = [(c["start"], c["end"], c["kind"]) for c in out["citations"]]
    assert found == [(10, 20, "part"), (30, 40, "part"), (50, len(document), "part")]


BAD_CALLS = [
    ("search", {"query": 123}),
    ("search", {"query": "a"}),
    ("search", {"query": "creature", "k": 0}),
    ("search", {"query": "creature", "k": "many"}),
    ("grep", {"pattern": ""}),
    ("grep", {"pattern": "x", "max_hits": -3}),
    ("grep", {}),
    ("peek", {"start": 10, "end": 10}),
    ("peek", {"start": 1e30, "end": 2e30}),
    ("peek", {"start": None, "end": 5}),
    ("ask", {"question": "x"}),
    ("ask", {"question": "", "spans": [[0, 10]]}),
    ("ask", {"question": "x", "spans": []}),
    ("ask", {"question": "x", "spans": [[0, 10]] * 17}),
    ("ask", {"question": "x", "spans": [[[0, 10]]]}),
    ("ask", {"question": "x", "spans": [[0, "inf"]]}),
    ("ask", {"question": "x", "spans": [[10, 5]]}),
    ("ask", {"question": "x", "spans": [[0, 10**12]]}),
    ("ask", {"question": None, "spans": [[0, 10]]}),
    ("ask", {"question": "x", "spans": None}),
    ("ask_all", {"question": "x", "output": "median"}),
    ("ask_all", {"question": "   "}),
    ("ask_all", {}),
    ("final_answer", {"answer": "x"}),
]


@pytest.mark.parametrize("use_async", [False, True])
async def test_no_tool_argument_ends_the_run(use_async: bool) -> None:
    document, _ = needle_document()
    navigator = ScriptedNavigator(
        reader=PerfectReader(window=8192),
        script=[calls(*(call(name, **args) for name, args in BAD_CALLS)), _final("done")],
    )
    out = await _run(_graph(navigator), {"document": document, "question": "q"}, use_async)
    results = tool_results(navigator.root_prompts[-1])
    assert len(results) == len(BAD_CALLS)
    # Every call came back to the model as a message it can act on.
    assert all(result.strip() for result in results)
    assert out["answer"].startswith("done")
    assert not [e for e in out["errors"] if e.get("kind", "failed") == "failed"]


def test_the_progress_stream_says_when_a_reply_was_repaired() -> None:
    document, _ = needle_document()
    navigator = ScriptedNavigator(
        reader=PerfectReader(window=8192),
        script=[
            lambda _m: AIMessage('{"name": "grep", "arguments": {"pattern": "NEEDLE-0042"}}'),
            lambda _m: AIMessage("I found it."),
            _final("NEEDLE-0042 is QUASAR"),
        ],
    )
    chunks = _graph(navigator).stream({"document": document, "question": "q"}, stream_mode="custom")
    messages = [chunk["message"] for chunk in chunks if chunk.get("stage") == "navigate"]
    assert "The model wrote 1 tool call as text; reading it as a call" in messages
    assert "The model replied without a tool call; reminding it once" in messages
    assert messages[-1] == "Answer ready after 2 steps"

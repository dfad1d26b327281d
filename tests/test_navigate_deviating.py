"""Navigate mode against readers and root models that deviate the way real models do.

For every deviation, in both reply formats: the answer is right, or the answer (and the
tool result the root model works from) says what could not be read. Never a confident
wrong total.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langchain_openai import ChatOpenAI

from rlm_graph import create_rlm_graph
from tests.deviating_readers import DEVIATING_READERS, ToolCallsAsText
from tests.fakes import NEEDLE
from tests.navigator_fakes import (
    RECORD,
    DeviatingCounter,
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

DEVIATIONS = ["words", "sentence", "times", "preamble", "cut"]
FORMATS = ["text", "structured"]


def _answer_with_first_line(messages: list[BaseMessage]) -> AIMessage:
    # A root model that repeats what the tool said: the answer is only as honest as the tool result.
    first = tool_results(messages)[-1].splitlines()[0]
    return AIMessage("", tool_calls=[call("final", answer=first, citations=[])])


def ask_all(reader: Any, output: str, reply_format: str) -> tuple[str, dict[str, Any], str]:
    document, _ = sales_document()
    navigator = ScriptedNavigator(
        reader=reader,
        structured=True,
        script=[calls(call("ask_all", question="How many sales per key?", output=output)), _answer_with_first_line],
    )
    graph = create_rlm_graph(
        navigator,
        context_window=8192,
        part_tokens=2048,
        cache=False,
        mode="navigate",
        max_output_tokens=512,
        reply_format=reply_format,
    )
    out = graph.invoke({"document": document, "question": "How many sales are there?"})
    return tool_results(navigator.root_prompts[-1])[-1], out, document


def _check_honest(result: str, out: dict[str, Any], document: str, output: str) -> None:
    """Exact over what was read, and every part left out is named, in the tool result and the answer."""
    _, truth = sales_document()
    unparsed = [e for e in out["errors"] if e.get("kind") == "unparsed"]
    assert out["usage"].get("unparsed_replies", 0) == len(unparsed)
    left_out = Counter()
    for error in unparsed:
        left_out.update(RECORD.findall(document[error["start"] : error["end"]]))
        assert f"{error['start']}-{error['end']}" in result or "..." in result
    read = truth - left_out
    lines = result.splitlines()
    if unparsed:
        assert lines[0].startswith(f"Incomplete: {len(unparsed)} of "), result
        assert "Incomplete" in out["answer"]
        # The answer's own note says it too, whatever the root model wrote.
        assert "could not be read, even when asked again" in out["answer"].split("\n\n")[-1]
        assert "The navigator read" not in out["answer"]  # read, and reported as unreadable: not "unread"
        lines = lines[1:]
        if not lines:
            assert not read  # nothing could be read: no number is given at all
            return
    if output == "count":
        assert lines == [f"total: {sum(read.values())}"]
    else:
        assert lines[0] == f"{len(read)} distinct keys, {sum(read.values())} in all, largest first:"
        assert {line.split(": ")[0]: int(line.split(": ")[1]) for line in lines[1:]} == dict(read)


@pytest.mark.parametrize("reply_format", FORMATS)
@pytest.mark.parametrize("output", ["count", "tally"])
def test_a_reader_in_the_asked_form_gives_the_exact_result(output: str, reply_format: str) -> None:
    reader = TallyReader(window=8192)
    result, out, document = ask_all(reader, output, reply_format)
    _check_honest(result, out, document, output)
    assert not out["errors"]
    # The structured run asked every part for its JSON object: the reply form was followed.
    assert all(("`count`" in p or "`counts`" in p) == (reply_format == "structured") for p in reader.prompts)


@pytest.mark.parametrize("reply_format", FORMATS)
@pytest.mark.parametrize("output", ["count", "tally"])
@pytest.mark.parametrize("deviation", DEVIATIONS)
def test_a_deviating_reader_is_reported_never_summed(deviation: str, output: str, reply_format: str) -> None:
    reader = DeviatingCounter(window=8192, deviation=deviation)
    result, out, document = ask_all(reader, output, reply_format)
    _check_honest(result, out, document, output)
    assert out["errors"], f"every reply deviated, yet nothing was reported: {result}"
    assert len(reader.corrections) == len(out["errors"])  # each was asked once more before it was given up


@pytest.mark.parametrize("reply_format", FORMATS)
@pytest.mark.parametrize("output", ["count", "tally"])
@pytest.mark.parametrize("deviation", DEVIATIONS)
def test_a_reader_that_follows_the_correction_gives_the_exact_result(
    deviation: str, output: str, reply_format: str
) -> None:
    reader = DeviatingCounter(window=8192, deviation=deviation, persistent=False)
    result, out, document = ask_all(reader, output, reply_format)
    _check_honest(result, out, document, output)
    assert not out["errors"]
    assert reader.corrections  # corrected, not guessed
    assert re.match(r"(total: 360|5 distinct keys, 360 in all)", result)


# The root model: tool calls written as text, over HTTP, as a local model served them.


def _needle_navigator(written: str) -> Any:
    """A root model behind the local server that writes every tool call as JSON text (Qwen's tags or bare)."""

    def reply(messages: list[dict[str, Any]]) -> str:
        results = [m["content"] for m in messages if m["role"] == "tool"]
        if not results:
            wanted = {"name": "grep", "arguments": {"pattern": "NEEDLE-\\d+"}}
        elif len(results) == 1:
            start, end = spans_in(results[0])[0]
            # As the local model wrote them: a span as text.
            span = f"characters {start - 200}-{end + 200}"
            wanted = {"name": "ask", "arguments": {"question": "What is NEEDLE-0042?", "spans": [span]}}
        else:
            answer = "; ".join(NEEDLE.findall(results[-1]))
            wanted = {"name": "final", "arguments": {"answer": answer, "citations": spans_in(results[-1])}}
        text = json.dumps(wanted)
        return f"<tool_call>\n{text}\n</tool_call>" if written == "qwen" else text

    return reply


@pytest.mark.parametrize("written", ["qwen", "bare"])
async def test_tool_calls_written_as_text_over_http_are_followed(written: str) -> None:
    document, position = needle_document()
    with ChatServer(window=8192, tool_script=_needle_navigator(written)) as server:
        model = ChatOpenAI(model="qwen2.5-coder", base_url=server.base_url, api_key="not-needed", max_retries=0)
        graph = create_rlm_graph(model, context_window=8192, part_tokens=2048, cache=False, mode="navigate")
        out = await graph.ainvoke({"document": document, "question": "What is NEEDLE-0042?"})
    assert out["answer"].split("\n\n")[0] == "NEEDLE-0042 is QUASAR"
    assert "tool_call" not in out["answer"]
    assert '"name"' not in out["answer"]
    assert any(c["start"] <= position < c["end"] for c in out["citations"])
    assert out["usage"]["root_replies_repaired"] == 3
    assert [r.kind for r in server.requests] == ["direct", "direct", "read", "direct"]  # no retries were needed


def test_a_tool_call_cut_off_by_max_tokens_is_asked_again() -> None:
    document, _ = needle_document()
    cut = '{"name": "grep", "arguments": {"pattern": "NEEDLE'
    navigator = ScriptedNavigator(
        reader=TallyReader(window=8192),
        script=[
            lambda _m: AIMessage(cut, response_metadata={"finish_reason": "length"}),
            calls(call("grep", pattern=r"NEEDLE-\d+")),
            lambda m: AIMessage("", tool_calls=[call("final", answer="found", citations=spans_in(tool_results(m)[0]))]),
        ],
    )
    graph = create_rlm_graph(navigator, context_window=8192, part_tokens=2048, cache=False, mode="navigate")
    out = graph.invoke({"document": document, "question": "What is NEEDLE-0042?"})
    assert out["answer"].startswith("found")
    assert cut not in out["answer"]
    assert "no tool call" in navigator.root_prompts[1][-1].text
    assert out["usage"]["root_replies_repaired"] == 1


# The readers of ask: the deviating readers of tests/deviating_readers.py, in both reply formats.


def _ask_around_the_needle(messages: list[BaseMessage]) -> AIMessage:
    start, end = spans_in(tool_results(messages)[-1])[0]
    # The needle's neighbourhood, and two spans that hold nothing about it.
    spans = [[start - 300, end + 300], [1_000, 3_000], [100_000, 102_000]]
    return AIMessage("", tool_calls=[call("ask", question="What is NEEDLE-0042?", spans=spans)])


def _final_from_readings(messages: list[BaseMessage]) -> AIMessage:
    result = tool_results(messages)[-1]
    answer = "; ".join(sorted(set(NEEDLE.findall(result)))) or "The document does not say."
    return AIMessage("", tool_calls=[call("final", answer=answer, citations=spans_in(result)[:1])])


@pytest.mark.parametrize("reply_format", FORMATS)
@pytest.mark.parametrize("obeys", [False, True])
@pytest.mark.parametrize("reader_type", DEVIATING_READERS, ids=lambda t: t.__name__)
def test_ask_with_deviating_readers_answers_right_or_says_what_it_could_not_read(
    reader_type: type, obeys: bool, reply_format: str
) -> None:
    document, _ = needle_document()
    reader = reader_type(window=8192, obeys_corrections=obeys, max_tokens=512)
    navigator = ScriptedNavigator(
        reader=reader,
        structured=True,
        script=[calls(call("grep", pattern=r"NEEDLE-\d+")), _ask_around_the_needle, _final_from_readings],
    )
    graph = create_rlm_graph(
        navigator, context_window=8192, part_tokens=2048, cache=False, mode="navigate", reply_format=reply_format
    )
    out = graph.invoke({"document": document, "question": "What is NEEDLE-0042?"})
    result = tool_results(navigator.root_prompts[-1])[-1]
    assert '"relevant"' not in result  # the root model gets readings, never a reader's raw JSON
    answer = out["answer"].split("\n\n")[0]
    unparsed = [e for e in out["errors"] if e.get("kind") == "unparsed"]
    assert out["usage"].get("unparsed_replies", 0) == len(unparsed)
    for error in unparsed:
        assert f"[{error['start']}-{error['end']}] could not be read" in result
    if unparsed:
        assert "could not be read, even when asked again" in out["answer"]
    else:
        assert answer == "NEEDLE-0042 is QUASAR", result
    if obeys:
        assert answer == "NEEDLE-0042 is QUASAR", result
        assert not unparsed
    # Never a confident wrong answer: no other code, and no "does not say" without a note.
    assert set(NEEDLE.findall(out["answer"])) <= {"NEEDLE-0042 is QUASAR"}
    assert answer != "The document does not say." or unparsed


@pytest.mark.parametrize("thinks", [False, True], ids=["plain", "thinks-first"])
@pytest.mark.parametrize("reply_format", FORMATS)
def test_a_model_writing_every_tool_call_as_text_navigates(reply_format: str, thinks: bool) -> None:
    # tests.deviating_readers.ToolCallsAsText: the root model's calls come as JSON in content
    # ({"name", "args"}), its readings as a perfect reader's, in either reply format. Thinking
    # first, it drafts another call in its <think> block: that draft is not a call.
    document, position = needle_document()

    def script(messages: list[BaseMessage]) -> list[dict[str, Any]]:
        results = tool_results(messages)
        if not results:
            return [{"name": "grep", "args": {"pattern": r"NEEDLE-\d+"}}]
        if len(results) == 1:
            start, end = spans_in(results[0])[0]
            return [{"name": "ask", "args": {"question": "What is NEEDLE-0042?", "spans": [[start - 300, end + 300]]}}]
        answer = "; ".join(sorted(set(NEEDLE.findall(results[-1]))))
        return [{"name": "final", "args": {"answer": answer, "citations": spans_in(results[-1])}}]

    model = ToolCallsAsText(window=8192, script=script, thinks=thinks)
    graph = create_rlm_graph(
        model, context_window=8192, part_tokens=2048, cache=False, mode="navigate", reply_format=reply_format
    )
    out = graph.invoke({"document": document, "question": "What is NEEDLE-0042?"})
    assert out["answer"].split("\n\n")[0] == "NEEDLE-0042 is QUASAR"
    assert any(c["start"] <= position < c["end"] for c in out["citations"])
    assert out["usage"]["root_replies_repaired"] == 3
    assert not out["errors"]


# ask_all over HTTP with ChatOpenAI: structured replies where the server takes them, text where it refuses.


@pytest.mark.parametrize("server_takes_schemas", [True, False])
async def test_ask_all_count_over_http_in_either_reply_format(server_takes_schemas: bool) -> None:
    entries = [f"ENTRY-{n:04d} was recorded on the ledger today." for n in range(400)]
    document = "\n\n".join("\n".join(entries[i : i + 10]) for i in range(0, 400, 10))
    seen: list[str] = []

    def root(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results = [m["content"] for m in messages if m["role"] == "tool"]
        if not results:
            return [{"name": "ask_all", "args": {"question": "How many ledger entries?", "output": "count"}}]
        seen.append(results[-1])
        return [{"name": "final", "args": {"answer": results[-1].splitlines()[0], "citations": []}}]

    facts = re.compile(r"ENTRY-\d{4}")
    refuses = not server_takes_schemas
    with ChatServer(window=8192, facts=facts, tool_script=root, reject_response_format=refuses) as server:
        model = ChatOpenAI(model="local-model", base_url=server.base_url, api_key="not-needed", max_retries=0)
        graph = create_rlm_graph(
            model, context_window=8192, part_tokens=2048, cache=False, mode="navigate", max_output_tokens=512
        )
        out = await graph.ainvoke({"document": document, "question": "How many ledger entries are there?"})
    reads = [r for r in server.requests if r.kind == "read"]
    if server_takes_schemas:
        # {"count": n} per part, summed in code: exact.
        assert all(r.response_format is not None for r in reads)
        assert seen[0] == "total: 400"
        assert out["answer"] == "total: 400"
        assert not out["errors"]
    else:
        # Refused (a 400 to the reads already in flight), then text for the rest of the run; the
        # server's text replies list the entries instead of counting them, so no part is summed
        # and every one is reported.
        with_schema = [r for r in reads if r.response_format is not None]
        assert 1 <= len(with_schema) <= 8  # at most max_concurrency were sent before the first refusal
        assert all(r.outcome.startswith("400") or "400" in r.outcome for r in with_schema), with_schema
        assert seen[0].startswith("Incomplete: ")
        assert "total:" not in seen[0]
        unparsed = [e for e in out["errors"] if e.get("kind") == "unparsed"]
        assert unparsed
        assert all(e["reply"].startswith("ENTRY-") for e in unparsed)
        assert "could not be read, even when asked again" in out["answer"]
        assert not [e for e in out["errors"] if e.get("kind", "failed") == "failed"]  # the 400 failed no part

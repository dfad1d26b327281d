"""Navigate mode against readers and root models that deviate the way real models do.

For every deviation, in both reply formats: the answer is right, or the answer (and the
tool result the root model works from) says what could not be read. Never a confident
wrong total.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage

from rlm_graph import create_rlm_graph
from tests.navigator_fakes import RECORD, DeviatingCounter, ScriptedNavigator, TallyReader, call, calls, tool_results

DEVIATIONS = ["words", "sentence", "times", "preamble", "cut"]
FORMATS = ["text", "structured"]


def sales_document(parts: int = 6) -> tuple[str, Counter[str]]:
    lines, truth = [], Counter()
    for chapter in range(1, parts + 1):
        lines.append(f"Chapter {chapter + 10}\n")
        for i in range(60):
            key = f"K{(i * 7 + chapter) % 5:04d}"
            truth[key] += 1
            lines.append(f"Entry {chapter}-{i}: SALE {key} recorded." + ("\n" if i % 20 == 19 else ""))
    return "\n".join(lines), truth


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
        assert "The navigator read" in out["answer"].split("\n\n")[-1]
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

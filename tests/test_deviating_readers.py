"""Readers that deviate like real models, on the core tasks, in both reply formats (issue 27 §5).

For every deviation and task: the answer is right, or the answer says what could not be
read. Never a confident wrong answer: no NEEDLE code the document does not hold, and never
"the document does not contain it" for a document some of whose replies were not read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from langchain_core.messages import AIMessage

from rlm_graph import RLMContext, create_rlm_graph
from rlm_graph.prompts import NO_ANSWER_MESSAGE
from tests.deviating_readers import (
    CORRECTION,
    DEVIATING_READERS,
    ChangedNumberQuotes,
    CountsInWords,
    CutByMaxTokens,
    DeviatingReader,
    FindingsAfterPreamble,
    MarkerAfterPreamble,
    ParaphrasedQuotes,
    ProseInsteadOfMarker,
    SaysIrrelevantBesideFacts,
    ThinksAloud,
    ThinksWithoutOpeningTag,
    in_words,
)
from tests.fakes import NEEDLE, filler, plant_needles

UNREAD_NOTE = "could not be read"
FORMATS = ("text", "structured")
# Readable deviations: the reply says what it means, in another shape.
# A reasoning model's <think> block before its reply is set apart, never read as the reply.
READABLE = (
    FindingsAfterPreamble, ChangedNumberQuotes, ParaphrasedQuotes, CountsInWords, ThinksAloud, ThinksWithoutOpeningTag
)


@dataclass(frozen=True)
class Task:
    name: str
    document: str
    question: str
    expected: tuple[str, ...]
    """What a right answer holds."""
    mode: str = "full"


def _tasks() -> dict[str, Task]:
    base = filler(220, 5)
    one, (needle,), _ = plant_needles(base, 1, seed=3)
    many, facts, _ = plant_needles(base, 5, seed=4)
    counted, counted_facts, _ = plant_needles(base, 4, seed=6)
    # Tally: one code stated at the start and again at the end, in two parts.
    tallied, tally_facts, _ = plant_needles(base, 3, seed=8)
    tallied = f"{tally_facts[0]}.\n\n{tallied}\n\n{tally_facts[0]}."
    code = needle.split(" is ")[0]
    return {
        "needle": Task("needle", one, "What is the value of the NEEDLE code?", (needle,)),
        "multi": Task("multi", many, "List every NEEDLE code and its value.", tuple(facts)),
        "count": Task(
            "count", counted, "How many NEEDLE codes does the document hold?", (f"There are {len(counted_facts)}",)
        ),
        "tally": Task(
            "tally",
            tallied,
            "How many times does each NEEDLE code appear?",
            (f"{tally_facts[0]}: 2", f"{tally_facts[1]}: 1", f"{tally_facts[2]}: 1"),
        ),
        "focused": Task("focused", one, f"What is {code}?", (needle,), mode="focused"),
    }


TASKS = _tasks()


def _run(reader: DeviatingReader, task: Task, reply_format: str) -> dict:
    graph = create_rlm_graph(reader, mode=task.mode, cache=False, max_concurrency=2)
    return graph.invoke(
        {"document": task.document, "question": task.question}, context=RLMContext(reply_format=reply_format)
    )


def assert_honest(out: dict, task: Task) -> bool:
    """The answer is right, or it says what could not be read; returns whether it is right."""
    answer = out["answer"]
    held = set(NEEDLE.findall(task.document))
    assert set(NEEDLE.findall(answer)) <= held, f"a code the document does not hold: {answer!r}"
    right = all(expected in answer for expected in task.expected)
    if right:
        return True
    assert UNREAD_NOTE in answer, f"a wrong answer that does not say what it could not read: {answer!r}"
    assert out["usage"]["unparsed_replies"] > 0
    assert not answer.startswith(NO_ANSWER_MESSAGE)
    unparsed = [error for error in out["errors"] if error.get("kind") == "unparsed"]
    assert unparsed, out["errors"]
    assert all(len(error["reply"]) <= 200 for error in unparsed)
    return False


@pytest.mark.parametrize("reply_format", FORMATS)
@pytest.mark.parametrize("task", list(TASKS), ids=list(TASKS))
@pytest.mark.parametrize("reader", DEVIATING_READERS, ids=[r.__name__ for r in DEVIATING_READERS])
def test_deviating_readers_never_give_a_confident_wrong_answer(
    reader: type[DeviatingReader], task: str, reply_format: str
) -> None:
    model = reader()
    out = _run(model, TASKS[task], reply_format)
    right = assert_honest(out, TASKS[task])
    if reader in READABLE:
        # A reply that says what it means in another shape is read: right, with nothing to report.
        assert right, out["answer"]
        assert out["usage"]["unparsed_replies"] == 0
    if reader in (ProseInsteadOfMarker, MarkerAfterPreamble):
        # The parts with facts are read; the others (if any) could not be, and the answer says so.
        assert right, out["answer"]
        if out["usage"].get("unparsed_replies"):
            assert UNREAD_NOTE in out["answer"]
            assert any(CORRECTION in prompt for prompt in model.prompts)
    if reader is SaysIrrelevantBesideFacts:
        # "Not relevant" beside the facts: neither half is taken; the parts with facts are named as unread.
        assert not right
        assert UNREAD_NOTE in out["answer"]
    if reader is CutByMaxTokens:
        assert not right
        assert "Nothing relevant to the question was found in the parts that were read" in out["answer"]


@pytest.mark.parametrize("reply_format", FORMATS)
@pytest.mark.parametrize("reader", [ProseInsteadOfMarker, MarkerAfterPreamble], ids=lambda r: r.__name__)
async def test_a_reader_that_follows_the_correction_is_read_in_full(
    reader: type[DeviatingReader], reply_format: str
) -> None:
    model = reader(obeys_corrections=True)
    task = TASKS["needle"]
    graph = create_rlm_graph(model, cache=False)
    out = await graph.ainvoke(
        {"document": task.document, "question": task.question}, context=RLMContext(reply_format=reply_format)
    )
    assert all(fact in out["answer"] for fact in task.expected)
    assert UNREAD_NOTE not in out["answer"]
    assert out["usage"].get("unparsed_replies", 0) == 0
    corrections = [prompt for prompt in model.prompts if CORRECTION in prompt]
    assert corrections
    # Each corrective follow-up is counted as a call.
    assert out["usage"]["llm_calls"] == len(model.prompts)


def test_a_rambling_reader_is_held_to_the_reply_budget() -> None:
    model = CutByMaxTokens()
    task = TASKS["needle"]
    graph = create_rlm_graph(model, cache=False, max_output_tokens=512)
    out = graph.invoke({"document": task.document, "question": task.question})
    # Every reply was cut at the budget the plan reserved (the retry's a little below it).
    assert model.overflows == 0
    assert out["usage"]["unparsed_replies"] > 0
    assert all(error["kind"] == "unparsed" for error in out["errors"])
    assert "cut off" in out["errors"][0]["error"]


def test_nothing_read_where_the_search_finds_the_terms_says_so() -> None:
    """Every reading says "nothing" (a reader stuck on the marker), yet the terms are in the text."""

    class MarkerEverywhere(DeviatingReader):
        def deviate_text(self, reply: str, facts: list[str], part: str) -> str:
            return "NO_RELEVANT_INFORMATION"

    document = filler(200, 5) + "\n\nThe launch code is ZULU-7.\n\n" + filler(200, 6)
    out = create_rlm_graph(MarkerEverywhere(), cache=False, reply_format="text").invoke(
        {"document": document, "question": "What is the launch code?"}
    )
    start = document.index("The launch code")
    assert out["answer"].startswith(NO_ANSWER_MESSAGE)
    assert f"a search of the text finds the question's terms in it (characters {start}-{start + 26})" in out["answer"]


def test_counts_in_words() -> None:
    assert [in_words(n) for n in (0, 3, 20, 21)] == ["zero", "three", "twenty", "21"]
    assert re.fullmatch(r"This part holds two of them: .*", CountsInWords().deviate_text("A; B", ["A", "B"], ""))


class UnsureReader(DeviatingReader):
    """A small model that says it is unsure of every part where it found something."""

    def deviate_text(self, reply: str, facts: list[str], part: str) -> str:
        return f"{reply}\nCONFIDENCE: {'low' if facts else 'high'}"

    def deviate_json(self, reply: dict, facts: list[str], part: str) -> dict:
        return {**reply, "confidence": "low" if facts else "high"}


@pytest.mark.parametrize("reply_format", FORMATS)
def test_relay_reads_the_confidence_in_both_formats(reply_format: str) -> None:
    small, large = UnsureReader(), DeviatingReader()
    task = TASKS["multi"]
    graph = create_rlm_graph(small, large_model=large, cache=False, reply_format=reply_format)
    out = graph.invoke({"document": task.document, "question": task.question})
    assert all(fact in out["answer"] for fact in task.expected)
    reads = [prompt for prompt in small.prompts if "<document_part start=" in prompt]
    parts_with_facts = sum(bool(NEEDLE.search(prompt)) for prompt in reads)
    assert out["usage"]["escalated_parts"] == parts_with_facts
    assert out["usage"].get("unparsed_replies", 0) == 0
    # The large model re-read exactly those parts, and wrote the final answer.
    assert sum("<document_part start=" in prompt for prompt in large.prompts) == parts_with_facts
    # The confidence request is worded for the format: a JSON field, or a last line.
    asks_for_line = ["CONFIDENCE: high, CONFIDENCE: medium or CONFIDENCE: low" in prompt for prompt in reads]
    assert all(asks_for_line) if reply_format == "text" else not any(asks_for_line)


def test_tool_calls_written_as_text_come_back_as_content() -> None:
    """For navigate's tests: the reader writes its tool call as JSON in content, with no tool_calls."""
    from langchain_core.tools import tool

    from tests.deviating_readers import ToolCallsAsText

    @tool
    def grep(pattern: str) -> str:
        """Find a pattern."""
        return pattern

    reply = ToolCallsAsText(script=lambda messages: [{"name": "grep", "args": {"pattern": "NEEDLE"}}]).bind_tools(
        [grep]
    ).invoke("Find the needles.")
    assert reply.tool_calls == []
    assert json.loads(reply.content) == {"name": "grep", "args": {"pattern": "NEEDLE"}}


class RamblingAnswerer(DeviatingReader):
    """Reads perfectly, but rambles before a whole document's answer, past its ``max_tokens``."""

    def _reply(self, messages: list, kw: dict) -> Any:
        prompt = "\n".join(m.text for m in messages)
        if "<document>" not in prompt or (CORRECTION in prompt and self.obeys_corrections):
            return super()._reply(messages, kw)
        answer = super()._reply(messages, kw).generations[0].message.text
        return self._cut("Let me think about this step by step. " + " ".join(["hmm"] * 3000) + " " + answer)


@pytest.mark.parametrize("obeys", [False, True], ids=["rambles-again", "obeys"])
def test_a_direct_answer_cut_at_max_tokens_is_never_the_answer(obeys: bool) -> None:
    # A document that fits one call is answered in one call. A reply cut at max_tokens is not
    # the answer: the model is asked once more; if that is cut too, the answer says so.
    task = TASKS["needle"]
    model = RamblingAnswerer(obeys_corrections=obeys)
    out = create_rlm_graph(model, cache=False, max_output_tokens=512).invoke(
        {"document": task.document[:3000] + task.expected[0], "question": task.question}
    )
    assert out["usage"]["llm_calls"] == 2
    assert "hmm hmm" not in out["answer"]
    if obeys:
        assert task.expected[0] in out["answer"]
        assert out["usage"].get("unparsed_replies", 0) == 0
        return
    assert UNREAD_NOTE in out["answer"]
    assert not out["answer"].startswith(NO_ANSWER_MESSAGE)
    assert out["usage"]["unparsed_replies"] == 1
    assert [error["kind"] for error in out["errors"]] == ["unparsed"]
    assert "cut off" in out["errors"][0]["error"]


class ThinksPastTheLimit(DeviatingReader):
    """A reasoning model whose server puts its thoughts in a field of their own: a reading's thinking
    uses up ``max_tokens``, and ``content`` comes back empty with ``finish_reason`` length."""

    def _reply(self, messages: list, kw: dict) -> Any:
        result = super()._reply(messages, kw)
        prompt = "\n".join(m.text for m in messages)
        if "<document_part start=" in prompt and not (CORRECTION in prompt and self.obeys_corrections):
            result.generations[0].message = AIMessage("", response_metadata={"finish_reason": "length"})
        return result


@pytest.mark.parametrize("obeys", [False, True], ids=["thinks-too-long-again", "obeys"])
def test_a_reading_cut_before_any_answer_is_asked_again_shorter(obeys: bool) -> None:
    task = TASKS["needle"]
    model = ThinksPastTheLimit(obeys_corrections=obeys)
    out = create_rlm_graph(model, cache=False, reply_format="text").invoke(
        {"document": task.document, "question": task.question}
    )
    reads = [p for p in model.prompts if "<document_part start=" in p]
    assert any(CORRECTION in p and "cut off" in p for p in reads)  # asked again, told why
    assert_honest(out, task)
    if obeys:
        assert task.expected[0] in out["answer"]
        assert out["usage"].get("unparsed_replies", 0) == 0
    else:
        assert UNREAD_NOTE in out["answer"]
        assert all("cut off" in error["error"] for error in out["errors"])

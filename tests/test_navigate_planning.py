"""Navigate mode plans on an async run's event loop without holding it, and reads the spans it is asked to."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from rlm_graph import create_rlm_graph
from rlm_graph.navigate.document import NavDocument
from rlm_graph.splitter import Span
from rlm_graph.tokens import TiktokenCounter
from tests.fakes import NEEDLE, PerfectReader, insert_at_paragraph
from tests.helpers import LoopTurns
from tests.navigator_fakes import ScriptedNavigator, TallyReader, call, calls, spans_in, tool_results
from tests.test_navigate import BOOK


class TurnTally(TiktokenCounter):
    """cl100k_base, adding up the characters counted on the event loop's thread between two turns of the loop."""

    def __init__(self) -> None:
        super().__init__(exact=True)
        self.loop_thread = threading.get_ident()
        self.turns = LoopTurns()
        self.recording = True
        self.chars_by_turn: dict[int, int] = {}

    def count_many(self, texts: Sequence[str]) -> list[int]:
        if self.recording and threading.get_ident() == self.loop_thread:
            chars = sum(len(text) for text in texts)
            self.chars_by_turn[self.turns.now] = self.chars_by_turn.get(self.turns.now, 0) + chars
        return super().count_many(texts)


def _graph(navigator: ScriptedNavigator, tally: TurnTally) -> Any:
    return create_rlm_graph(
        navigator, context_window=8192, part_tokens=2048, cache=False, mode="navigate", token_counter=tally
    )


async def _run_watched(graph: Any, tally: TurnTally, inputs: dict[str, Any]) -> dict[str, Any]:
    async with tally.turns:
        return await graph.ainvoke(inputs)


def _final_from_last(messages: list[BaseMessage]) -> AIMessage:
    last = tool_results(messages)[-1]
    found = "; ".join(NEEDLE.findall(last))
    return AIMessage("", tool_calls=[call("final", answer=found, citations=spans_in(last))])


async def test_the_first_step_plans_the_document_on_the_loop_in_slices(
    frankenstein: str, pride: str
) -> None:
    # The navigate node planned the whole document (about 270K tokens) in one go on the
    # loop: every other coroutine of the application waited for a whole tokenizer pass.
    text = frankenstein + "\n\n" + pride
    tally = TurnTally()
    navigator = ScriptedNavigator(
        reader=PerfectReader(window=8192), script=[calls(call("final", answer="done", citations=[]))]
    )
    out = await _run_watched(_graph(navigator, tally), tally, {"document": text, "question": "q"})
    assert out["answer"].startswith("done")
    assert sum(tally.chars_by_turn.values()) >= len(text)  # the document was counted on the loop
    assert max(tally.chars_by_turn.values()) < len(text) / 4  # in slices, the loop turning between them


async def test_ask_all_plans_its_counting_parts_on_the_loop_in_slices(frankenstein: str, pride: str) -> None:
    # ask_all's counts read smaller parts than the navigator's plan, so it plans the
    # whole document again; inside the async tool that held the loop for a whole pass.
    text = frankenstein + "\n\n" + pride
    for number in range(12):
        text, _ = insert_at_paragraph(text, f"Entry {number}: SALE K{number:04d} recorded.", 80_000 * (number + 1))
    tally = TurnTally()

    def count_step(_messages: list[BaseMessage]) -> AIMessage:
        tally.recording = True  # the document itself was planned before the first step
        return AIMessage("", tool_calls=[call("ask_all", question="How many sales?", output="count")])

    def final_step(messages: list[BaseMessage]) -> AIMessage:
        return AIMessage("", tool_calls=[call("final", answer=tool_results(messages)[-1], citations=[])])

    tally.recording = False
    navigator = ScriptedNavigator(reader=TallyReader(window=8192), script=[count_step, final_step])
    out = await _run_watched(_graph(navigator, tally), tally, {"document": text, "question": "How many sales?"})
    assert out["answer"].startswith("total: 12")
    # Its smaller parts share some units with the first plan (counted once per run), not most.
    assert sum(tally.chars_by_turn.values()) >= len(text) / 4
    assert max(tally.chars_by_turn.values()) < len(text) / 8


def test_ask_on_a_span_after_blank_text_reads_all_of_it() -> None:
    # A span too large for one call is planned on its own text; its leaves were then
    # checked for blankness against the whole document's offsets, so a span starting
    # after a blank stretch lost its first parts without a word.
    document, _ = insert_at_paragraph(BOOK, "NEEDLE-0042 is QUASAR.", 5_000)
    document = "\n" * 40_000 + document
    navigator = ScriptedNavigator(
        reader=PerfectReader(window=8192),
        script=[
            calls(call("ask", question="What is NEEDLE-0042?", spans=[[40_000, len(document)]])),
            _final_from_last,
        ],
    )
    graph = create_rlm_graph(navigator, context_window=8192, part_tokens=2048, cache=False, mode="navigate")
    out = graph.invoke({"document": document, "question": "What is NEEDLE-0042?"})
    assert "NEEDLE-0042 is QUASAR" in tool_results(navigator.root_prompts[-1])[-1]
    assert out["answer"].startswith("NEEDLE-0042 is QUASAR")


def test_an_answer_cut_to_its_share_of_the_result_says_so() -> None:
    # ask gives each span's answer an equal share of the tool result; an answer longer
    # than its share was cut without a word, and the root model took it as whole.
    lines = [f"NEEDLE-{n:04d} is {'ABCDEFGHIJKLMNOPQRSTUVWXYZ'[n % 26] * 6}." for n in range(400)]
    document = "\n\n".join(" ".join(lines[i : i + 25]) for i in range(0, 400, 25))
    step = len(document) // 16
    spans = [[n * step, (n + 1) * step] for n in range(16)]
    navigator = ScriptedNavigator(
        reader=PerfectReader(window=8192),
        script=[calls(call("ask", question="List the NEEDLE codes.", spans=spans)), _final_from_last],
    )
    graph = create_rlm_graph(navigator, context_window=8192, part_tokens=2048, cache=False, mode="navigate")
    graph.invoke({"document": document * 3, "question": "List the NEEDLE codes."})
    result = tool_results(navigator.root_prompts[-1])[-1]
    blocks = result.split("\n\n")
    assert len(blocks) >= 12
    cut = [block for block in blocks if block.endswith("[answer cut to its share of the result]")]
    assert cut, result[:400]
    # Only the answers that were cut say so: each one's text stops short of its span's facts.
    for block in cut:
        assert len(NEEDLE.findall(block)) < 25


def test_a_cut_outline_says_where_it_stops() -> None:
    # The outline (up to 40 entries) is cut to a fifth of the root window, which a small
    # window cannot hold whole; its last line then looked like the end of the document.
    navigator = ScriptedNavigator(
        reader=PerfectReader(window=4096), script=[calls(call("final", answer="done", citations=[]))], window=4096
    )
    graph = create_rlm_graph(navigator, context_window=4096, cache=False, mode="navigate")
    document = (BOOK * 4)[:440_000]  # 40 parts or fewer: one outline line each
    graph.invoke({"document": document, "question": "q"})
    first = navigator.root_prompts[0][-1].text
    listed = [line for line in first.splitlines() if line.startswith("- characters ")]
    assert listed  # some parts are listed, each on a whole line
    assert all(line.split(":")[0].endswith("tokens)") for line in listed)
    assert f"the outline is cut here to fit the window; the document goes on to character {len(document)}" in first


def test_search_counts_the_query_words_a_slice_of_text_at_a_time(frankenstein: str, pride: str) -> None:
    # search counted the query's words in every leaf in one piece, which an async run
    # sent to a thread (slow beside a busy loop: see rlm_graph.steps); it now pauses
    # between slices, so an async run does it on its loop.
    text = frankenstein + "\n\n" + pride
    text, _ = insert_at_paragraph(text, "The vault code is NEEDLE-0777.", len(text) // 2)
    leaves = [Span(start, min(start + 20_000, len(text)), 5_000) for start in range(0, len(text), 20_000)]
    nav = NavDocument(text=text, leaves=leaves, tokens=5_000 * len(leaves), count_many=TiktokenCounter().count_many)
    steps = nav.search("vault code", 3, None)
    pauses = 0
    while True:
        try:
            request = steps.send(None)
        except StopIteration as done:
            result = done.value
            break
        assert request is None  # a pause, never work handed to a thread
        pauses += 1
    assert pauses >= len(text) // 256_000 - 1
    assert "NEEDLE-0777" in result
    assert "best spans for 'vault code'" in result.splitlines()[0]

"""Quote-level citations: a citation points at the supporting sentence, not the whole part."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from rlm_graph import create_rlm_graph
from rlm_graph import quotes as quotes_module
from rlm_graph.file_input import read_file
from rlm_graph.prompts import NO_RELEVANT_INFORMATION
from rlm_graph.quotes import cite_quotes, locate_quote, quote_citations, quote_steps, split_quotes
from rlm_graph.sentences import split_sentences
from rlm_graph.steps import arun_steps, run_steps
from tests.fakes import NEEDLE, PerfectReader, filler, part_text, plant_needles
from tests.fakes import ScriptedReader as FakesScriptedReader
from tests.helpers import LoopTurns, collect
from tests.navigator_fakes import ScriptedNavigator, call, calls, tool_results
from tests.test_cli import EXAMPLE, run_cli
from tests.test_cli import QUESTION as CLI_QUESTION

QUESTION = "List every NEEDLE code and the word it stands for."


class ScriptedReader(PerfectReader):
    """A perfect reader whose readings (prompts with a document part) are written by ``script``."""

    script: Callable[[str, list[str]], str] | None = None

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        prompt = "\n".join(m.text for m in messages)
        facts = sorted(set(NEEDLE.findall(prompt)))
        if "<document_part start=" not in prompt or not facts or self.script is None:
            return super()._answer(messages)
        with self._lock:
            self._prompts.append(prompt)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(self.script(prompt, facts)))])


def _holding(position: int, citations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in citations if c["start"] <= position < c["end"]]


async def test_cited_spans_of_planted_facts_are_at_most_two_sentences(frankenstein: str) -> None:
    text, facts, offsets = plant_needles(frankenstein[:200_000], 15)
    model = PerfectReader(window=8192, reserved_output=1024)
    graph = create_rlm_graph(model, max_output_tokens=1024)
    out, _ = await collect(graph, {"document": text, "question": QUESTION})
    assert [fact for fact in facts if fact not in out["answer"]] == []
    assert out["usage"]["max_depth"] >= 1  # quotes survive nested levels' syntheses
    for fact, offset in zip(facts, offsets, strict=True):
        holding = _holding(offset, out["citations"])
        assert holding, fact
        for citation in holding:
            span = text[citation["start"] : citation["end"]]
            assert fact in span
            assert len(split_sentences(span)) <= 2, span
            assert len(span) <= 300, span
            assert citation["quote"] == span
            part = citation["part"]
            assert part["start"] <= citation["start"] < citation["end"] <= part["end"]
            assert part["end"] - part["start"] > 10 * len(span)
    assert out["usage"]["unsupported_quotes"] == 0
    # The synthesis prompts carry the reports, not the QUOTE lines.
    assert not any("QUOTE:" in p for p in model.prompts if "<finding id=" in p)


def test_quote_with_changed_whitespace_and_curly_quotes_is_found() -> None:
    part = 'Then he said, "I will be with you on your wedding-night."  And he\nvanished  at once.'
    quote = "He said, \u201cI will be with you on your wedding\u2014night.\u201d And he vanished at once."
    spans = locate_quote(quote, part)
    assert spans is not None
    assert [part[s:e] for s, e in spans] == [
        'he said, "I will be with you on your wedding-night."  And he\nvanished  at once.'
    ]
    # A dropped word is a small difference: the tolerant match still finds the sentence.
    spans = locate_quote("I will be with you on wedding-night", part)
    assert spans is not None
    assert "wedding-night" in part[spans[0][0] : spans[0][1]]
    # An ellipsis joins two pieces of the part; each piece is cited on its own.
    spans = locate_quote("Then he said ... vanished at once", part)
    assert spans is not None
    assert [part[s:e] for s, e in spans] == ["Then he said", "vanished  at once"]
    assert locate_quote("The moon is made of green cheese entirely.", part) is None


def test_quote_lines_are_parsed_with_decoration_and_stripped_from_the_report() -> None:
    reply = "The estate is worth two thousand a year.\n"
    reply += '- **QUOTE:** "two thousand a year"\nquote: \u201cMr. Bennet\u201d (p. 1)'
    report, quotes, formatted = split_quotes(reply)
    assert report == "The estate is worth two thousand a year.\n(p. 1)"
    assert quotes == ["two thousand a year", "Mr. Bennet"]
    assert formatted
    reading = quote_citations(reply, "Mr. Bennet had two thousand a year.", 100, 135)
    assert [(c["start"], c["end"], c["quote"]) for c in reading.citations] == [
        (100, 110, "Mr. Bennet"),
        (115, 134, "two thousand a year"),
    ]
    assert all(c["part"] == {"start": 100, "end": 135} for c in reading.citations)


async def test_invented_quote_is_counted_and_not_a_citation(frankenstein: str) -> None:
    text, facts, offsets = plant_needles(frankenstein[:60_000], 3)
    invented = "The moon is made of green cheese, said the captain."

    readings: list[str] = []

    def script(prompt: str, found: list[str]) -> str:
        readings.append(prompt)
        return "; ".join(found) + f'\nQUOTE: "{invented}"'

    model = ScriptedReader(script=script)
    graph = create_rlm_graph(model, max_output_tokens=1024)
    out, events = await collect(graph, {"document": text, "question": QUESTION})
    assert all(fact in out["answer"] for fact in facts)
    assert readings
    assert out["usage"]["unsupported_quotes"] == len(readings)
    assert not any(invented in (c.get("quote") or "") for c in out["citations"])
    # Nothing loses its citation: the parts holding the facts are cited whole.
    assert all(_holding(offset, out["citations"]) for offset in offsets)
    assert all("quote" not in c for c in out["citations"])
    messages = [e["message"] for e in events if e["type"] == "progress"]
    assert any("could not be found in the part" in m for m in messages)
    assert "green cheese" not in out["answer"]


async def test_reader_ignoring_the_format_but_quoting_yields_quote_citations(frankenstein: str) -> None:
    text, facts, offsets = plant_needles(frankenstein[:60_000], 3)

    def script(_: str, found: list[str]) -> str:
        # Curly quotation marks, no QUOTE lines: a real model's free-form reply.
        return " ".join(f"The part states \u201c{fact}\u201d." for fact in found)

    model = ScriptedReader(script=script)
    graph = create_rlm_graph(model, max_output_tokens=1024)
    out, _ = await collect(graph, {"document": text, "question": QUESTION})
    assert all(fact in out["answer"].replace("\n", " ") for fact in facts)
    for fact, offset in zip(facts, offsets, strict=True):
        (citation,) = _holding(offset, out["citations"])
        assert citation["quote"] == fact == text[citation["start"] : citation["end"]]
    assert out["usage"]["unsupported_quotes"] == 0


def test_cli_prints_the_quotes_under_the_answer() -> None:
    result = run_cli("ask", str(EXAMPLE), CLI_QUESTION, "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    # Offsets count the text as every surface reads the file (byte-order mark removed, LF line ends).
    document = read_file(EXAMPLE).text
    quoted = [c for c in payload["citations"] if "quote" in c]
    assert quoted
    assert all(document[c["start"] : c["end"]] == c["quote"] for c in quoted)
    assert any("two thousand a year" in " ".join(c["quote"].split()) for c in quoted)
    result = run_cli("ask", str(EXAMPLE), CLI_QUESTION)
    lines = result.stdout.splitlines()
    citation_lines = [line for line in lines[lines.index("Citations:") :] if line.startswith("[")]
    shown = [" ".join(c["quote"].split())[:100] for c in quoted]
    assert all(any(f'"{quote}' in line for line in citation_lines) for quote in shown)


def test_the_part_is_normalized_at_most_once_and_only_when_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Normalizing walks the whole part in Python: once per quote it cost 0.4 s of a
    # 100K-token run (60 quotes), with the event loop blocked meanwhile.
    calls: list[int] = []
    original = quotes_module._normalized

    def counted(text: str, offset: int = 0) -> tuple[str, list[int]]:
        calls.append(len(text))
        return original(text, offset)

    monkeypatch.setattr(quotes_module, "_normalized", counted)
    part = "The launch code is ZULU-7.\n\nThe ship left at dawn. It was  “very cold” that day."
    exact = 'Found it.\nQUOTE: "The launch code is ZULU-7."\nQUOTE: "The ship left at dawn."'
    reading = quote_citations(exact, part, 100, 100 + len(part))
    assert len(reading.citations) == 2
    assert [c for c in calls if c == len(part)] == []
    loose = 'Found.\nQUOTE: "the launch code is zulu-7."\nQUOTE: "It was \\"very cold\\" that day."'
    reading = quote_citations(loose, part, 0, len(part))
    assert len(reading.citations) == 2
    assert [c for c in calls if c == len(part)] == [len(part)]


# --- A quote cites only what it says (issue 27 section 3) ---------------------------------------

_PLANT = "In 2019 the plant produced 1,804 units."
_VERDICT = "The jury found the defendant not guilty on all counts."
_DEGREE = "\u00b0"


@pytest.mark.parametrize(
    ("quote", "text"),
    [
        ("In 2019 the plant produced 1,204 units.", _PLANT),
        ("The jury found the defendant guilty on all counts.", _VERDICT),
        ("The witness was never seen at the house that night.", "The witness was seen at the house that night."),
        ("The committee didn't approve the budget for the year.", "The committee did approve the budget for the year."),
        ("The tank holds 40 litres of water when it is full.", "The tank holds 40 gallons of water when it is full."),
        ("The firm earned 5 million dollars in profit.", "The firm earned 5 billion dollars in profit."),
        ("Revenue grew by 3.5% in the second quarter.", "Revenue grew by 3.8% in the second quarter."),
        (f"The kettle boiled at 100 {_DEGREE}C on the stove.", f"The kettle boiled at 100 {_DEGREE}F on the stove."),
    ],
)
def test_a_quote_whose_numbers_negations_or_units_differ_is_unsupported(quote: str, text: str) -> None:
    part = f"Some words before it. {text} Some words after it."
    assert locate_quote(quote, part) is None
    reading = quote_citations(f'A summary.\nQUOTE: "{quote}"', part, 0, len(part))
    assert reading.citations == []
    assert reading.unsupported == reading.contradicted == [quote]


@pytest.mark.parametrize(
    ("quote", "text"),
    [
        # Thousands separators and decimal marks are written differently, the value is the same.
        ("In 2019 the plant produced 1804 units.", _PLANT),
        ("Revenue grew by 3,5 % in the second quarter.", "Revenue grew by 3.5% in the second quarter."),
        ("The committee did not approve the new budget.", "The committee didn't approve the new budget."),
        # A dropped word that is no number, negation or unit is still a small difference.
        ("The jury found the defendant not guilty on all the counts.", _VERDICT),
    ],
)
def test_a_quote_that_agrees_is_found_despite_small_differences(quote: str, text: str) -> None:
    part = f"Some words before it. {text} Some words after it."
    spans = locate_quote(quote, part)
    assert spans is not None
    assert [part[start:end] for start, end in spans] == [text]


def _echo_findings(prompt: str) -> str:
    # A faithful synthesis: it repeats what its findings say.
    findings = prompt.split("<findings>")[1].split("</findings>")[0]
    return " ".join(re.sub(r"<[^>]+>", " ", findings).split()) + " [F1]"


def test_a_fact_the_reader_states_only_in_its_quote_reaches_the_answer() -> None:
    launch = "The launch of the probe is set for 14 March 2031 from Kourou."
    doc = filler(60, 1) + f"\n\n{launch}\n\n" + filler(60, 2)

    def reply(prompt: str, kind: str) -> str:
        if kind == "read":
            if "14 March 2031" in part_text(prompt):
                return f'The part states when the probe launches:\nQUOTE: "{launch}"'
            return NO_RELEVANT_INFORMATION
        return _echo_findings(prompt) if kind == "synth" else "?"

    model = FakesScriptedReader(reply=reply, window=2048, reserved_output=256)
    out = create_rlm_graph(model, max_output_tokens=256, cache=False).invoke(
        {"document": doc, "question": "When does the probe launch?"}
    )
    assert "14 March 2031" in out["answer"]
    assert [doc[c["start"] : c["end"]] for c in out["citations"]] == [launch]
    # Passed on once: the report, then the passage it points at.
    (synthesis,) = model.calls("synth")
    assert synthesis.count("14 March 2031") == 1


def test_the_finding_holds_the_report_and_the_passages_it_does_not_already_say() -> None:
    part = "The estate is entailed. Mr. Bennet had two thousand a year. The launch of the probe is on 14 March 2031."
    reply = (
        "Mr. Bennet has two thousand a year; the date follows.\n"
        'QUOTE: "Mr. Bennet had two thousand a year."\n'
        'QUOTE: "two thousand a year"\n'
        # A dropped word: the finding carries the part's words, not the reader's.
        'QUOTE: "The launch of probe is on 14 March 2031"'
    )
    reading = quote_citations(reply, part, 0, len(part))
    assert reading.text == (
        "Mr. Bennet has two thousand a year; the date follows.\n"
        '"Mr. Bennet had two thousand a year."\n'
        '"The launch of the probe is on 14 March 2031"'
    )
    # A report that already says the quote word for word does not get it twice.
    reply = 'NEEDLE-0001 is ZEBRA; NEEDLE-0002 is YAK\nQUOTE: "NEEDLE-0001 is ZEBRA."'
    reading = quote_citations(reply, "Found: NEEDLE-0001 is ZEBRA.", 0, 28)
    assert reading.text == "NEEDLE-0001 is ZEBRA; NEEDLE-0002 is YAK"


def test_an_unsupported_quote_does_not_reach_the_finding_but_a_note_does() -> None:
    # Not in the part: what it says is unverified, so the synthesis gets no fact from it
    # (a reader that quotes NEEDLE-0001 for NEEDLE-0000 would put a code the document does
    # not hold in the answer), only the word that the reading quoted what is not there.
    part = "The estate is entailed. Mr. Bennet had two thousand a year."
    invented = "The moon is made of green cheese, said the captain."
    reply = f'The part says the estate is entailed.\nQUOTE: "{invented}"\nQUOTE: "Mr. Bennet had 3,000 a year."'
    reading = quote_citations(reply, part, 0, len(part))
    assert reading.unsupported == [invented, "Mr. Bennet had 3,000 a year."]
    assert reading.contradicted == []  # neither is close to a passage of the part
    assert reading.text == (
        "The part says the estate is entailed.\n(2 of the reader's quotes are not in the part as written: unverified)"
    )
    assert "green cheese" not in reading.text
    reading = quote_citations(f'QUOTE: "{invented}"', part, 0, len(part))
    assert reading.text == "(1 of the reader's quotes is not in the part as written: unverified)"


def test_separated_report_and_quotes_are_located_the_same_way() -> None:
    # Structured replies arrive as a report and a list of quotes: one mechanism for both.
    part = "Before. In 2019 the plant produced 1,804 units. After."
    quotes = ["In 2019 the plant produced 1,804 units.", "1,204 units"]
    reply = "The plant output:\n" + "\n".join(f'QUOTE: "{quote}"' for quote in quotes)
    from_text = quote_citations(reply, part, 10, 10 + len(part))
    structured = run_steps(cite_quotes("The plant output:", quotes, part, 10, 10 + len(part)))
    assert structured == from_text
    assert [c["quote"] for c in structured.citations] == ["In 2019 the plant produced 1,804 units."]
    assert structured.unsupported == ["1,204 units"]


def test_graph_never_cites_the_sentence_a_quote_contradicts() -> None:
    doc = (
        filler(50, 1) + f"\n\n{_PLANT}\n\n" + filler(50, 2) + f"\n\n{_VERDICT}\n\n" + filler(50, 3)
    )

    def reply(prompt: str, kind: str) -> str:
        if kind == "read":
            text = part_text(prompt)
            if "1,804" in text:
                return 'The plant produced 1,204 units in 2019.\nQUOTE: "In 2019 the plant produced 1,204 units."'
            if "not guilty" in text:
                return 'The defendant was convicted.\nQUOTE: "The jury found the defendant guilty on all counts."'
            return NO_RELEVANT_INFORMATION
        return "1,204 units [F1]; convicted [F2]." if kind == "synth" else "?"

    model = FakesScriptedReader(reply=reply, window=2048, reserved_output=256)
    out = create_rlm_graph(model, max_output_tokens=256, cache=False).invoke(
        {"document": doc, "question": "How many units in 2019, and what was the verdict?"}
    )
    assert out["usage"]["unsupported_quotes"] == 2
    # Neither the sentences nor the parts that contradict the readers are cited for them.
    cited = [doc[c["start"] : c["end"]] for c in out["citations"]]
    assert [c for c in cited if "1,804" in c or "not guilty" in c] == []
    # The synthesis is told that each reader's quote is not what its part says, and never
    # gets the misquoted words from it.
    (synthesis,) = model.calls("synth")
    note = "(1 of the reader's quotes is not in the part as written: its numbers, units or negations differ)"
    assert synthesis.count(note) == 2
    assert "1,204 units." not in synthesis


def test_an_ellipsis_quote_cites_its_pieces_and_not_what_it_leaves_out() -> None:
    part = 'Then he said, "I will be with you." He turned away and walked to the boat. And he vanished at once.'
    spans = locate_quote("Then he said ... he vanished at once", part)
    assert spans is not None
    assert [part[start:end] for start, end in spans] == ["Then he said", "he vanished at once"]
    reading = quote_citations('He left.\nQUOTE: "Then he said \u2026 he vanished at once"', part, 0, len(part))
    assert [c["quote"] for c in reading.citations] == ["Then he said", "he vanished at once"]
    assert "walked to the boat" not in " ".join(c["quote"] for c in reading.citations)


def test_pieces_are_found_in_order_and_near_each_other() -> None:
    far = " ".join(["The rain fell on the quiet town all evening long."] * 20)
    part = f"He said no to the offer. {far} He said yes and left the room at once."
    # In order: the second piece must come after the first.
    assert locate_quote("left the room at once ... He said no", part) is None
    # Near: the second piece must follow within a few hundred characters of the first.
    assert locate_quote("He said no to the offer ... left the room at once", part) is None
    # A first piece that occurs more than once is taken where the next piece follows it.
    spans = locate_quote("He said ... left the room at once", part)
    assert spans is not None
    assert spans[0][0] == part.index("He said yes")


def test_a_multi_line_quote_is_found_line_by_line() -> None:
    part = "Roses are red,\nviolets are blue,\n  sugar is sweet,\nand so are you.\n"
    spans = locate_quote("Roses are red,\nsugar is sweet,", part)
    assert spans is not None
    assert [part[start:end] for start, end in spans] == ["Roses are red,", "sugar is sweet,"]
    # Lines that follow each other in the part are one passage.
    spans = locate_quote("Roses are red,\nviolets are blue,", part)
    assert spans is not None
    assert [part[start:end] for start, end in spans] == ["Roses are red,\nviolets are blue,"]
    # A QUOTE line whose quotation runs over several lines is one quote.
    reply = 'A poem.\nQUOTE: "Roses are red,\nsugar is sweet,"\nThat is all.'
    report, quotes, formatted = split_quotes(reply)
    assert (report, quotes, formatted) == ("A poem.\nThat is all.", ["Roses are red,\nsugar is sweet,"], True)
    reading = quote_citations(reply, part, 0, len(part))
    assert [c["quote"] for c in reading.citations] == ["Roses are red,", "sugar is sweet,"]
    # What follows the closing mark is the reader's; a quotation never closed loses its mark.
    reply = 'R.\nQUOTE: \u201ca b\nc d\u201d (p. 2)\nQUOTE: "e f'
    assert split_quotes(reply) == ("R.\n(p. 2)", ["a b\nc d", "e f"], True)
    # An apostrophe opens no quotation that runs on: the next line stays the reader's.
    reply = "QUOTE: 'Tis the season to be jolly\nThe part calls it \"the season\""
    assert split_quotes(reply) == ('The part calls it "the season"', ["'Tis the season to be jolly"], True)


def _recording_alignments(monkeypatch: pytest.MonkeyPatch, record: Callable[[str], None]) -> None:
    original = quotes_module.fuzz.partial_ratio_alignment

    def recorded(quote: str, text: str, **kwargs: Any) -> Any:
        record(quote)
        return original(quote, text, **kwargs)

    monkeypatch.setattr(quotes_module.fuzz, "partial_ratio_alignment", recorded)


def test_long_quotes_are_located_by_their_first_and_last_sentences(
    frankenstein: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    searched: list[int] = []
    _recording_alignments(monkeypatch, lambda quote: searched.append(len(quote)))
    part = frankenstein[20_000:80_000]
    passage = part[10_000:14_000]
    start = passage.index(". ") + 2
    passage = passage[start : passage.rindex(".") + 1]
    # One word changed in the middle: not found as written, found tolerantly.
    middle = passage.index(" the ", len(passage) // 2)
    misquoted = passage[:middle] + " a " + passage[middle + 5 :]
    spans = locate_quote(misquoted, part)
    assert spans is not None
    assert [part[s:e] for s, e in spans] == [passage]
    # Not in the part at all, or the right ends around another middle: unsupported.
    assert locate_quote(" ".join(frankenstein[300_000:308_000].split()), part) is None
    other = " ".join(frankenstein[300_000:300_000 + len(passage)].split())
    first_end = passage.index(". ") + 2
    last_start = passage.rindex(". ", 0, len(passage) - 2) + 2
    assert locate_quote(passage[:first_end] + other + " " + passage[last_start:], part) is None
    assert searched
    assert max(searched) <= 600


async def test_an_async_run_gives_the_loop_back_between_quote_searches(monkeypatch: pytest.MonkeyPatch) -> None:
    sentences = [f"The keeper of lighthouse number {n} was paid in silver coins every month." for n in range(4)]
    doc = filler(60, 1) + "\n\n" + " ".join(sentences) + "\n\n" + filler(60, 2)

    def reply(prompt: str, kind: str) -> str:
        if kind == "read":
            if sentences[0] in part_text(prompt):
                # Each quote drops a word, so each needs the tolerant search.
                quoted = [s.replace(" silver", "") for s in sentences]
                return "Keepers were paid.\n" + "\n".join(f'QUOTE: "{q}"' for q in quoted)
            return NO_RELEVANT_INFORMATION
        return "Paid in silver [F1]." if kind == "synth" else "?"

    turns_at_search: list[int] = []
    async with LoopTurns() as turns:
        _recording_alignments(monkeypatch, lambda _: turns_at_search.append(turns.now))
        model = FakesScriptedReader(reply=reply, window=2048, reserved_output=256)
        out = await create_rlm_graph(model, max_output_tokens=256, cache=False).ainvoke(
            {"document": doc, "question": "How were the keepers paid?"}
        )
    assert len([c for c in out["citations"] if "quote" in c]) == 4
    assert len(turns_at_search) == 4
    # Another coroutine ran between any two searches.
    assert all(later > earlier for earlier, later in itertools.pairwise(turns_at_search))


def test_a_common_first_piece_is_tried_wherever_it_stands() -> None:
    said = " ".join(f"He said {n} words to the crowd that day." for n in range(40))
    part = f"{said} He said yes and left the room at once."
    spans = locate_quote("He said ... left the room at once", part)
    assert spans is not None
    assert [part[s:e] for s, e in spans] == ["He said", "left the room at once"]
    assert spans[0][0] == part.index("He said yes")


def test_a_quote_wrapped_at_other_lines_than_the_part_is_one_passage() -> None:
    # The reader wraps the passage where the part does not: its first line alone ("and")
    # stands in many places, the whole stands in one.
    part = "and " * 200 + "Then he turned,\nand he vanished at once into the dark. " + "and " * 50
    spans = locate_quote("Then he turned, and\nhe vanished at once into the dark.", part)
    assert spans is not None
    assert [part[s:e] for s, e in spans] == ["Then he turned,\nand he vanished at once into the dark."]
    spans = locate_quote("and\nhe vanished at once into the dark.", part)
    assert spans is not None
    assert [part[s:e] for s, e in spans] == ["and he vanished at once into the dark."]


def test_navigate_ask_passes_on_a_fact_the_reader_states_only_in_its_quote() -> None:
    # The root model reads an ask's reading as the synthesis does: report and quoted passages.
    launch = "The launch of the probe is set for 14 March 2031 from Kourou."
    doc = filler(80, 1) + f"\n\n{launch}\n\n" + filler(80, 2)
    at = doc.index(launch)

    def reply(prompt: str, kind: str) -> str:
        if "14 March 2031" in prompt:
            return f'The part states when the probe launches:\nQUOTE: "{launch}"'
        return NO_RELEVANT_INFORMATION

    navigator = ScriptedNavigator(
        reader=FakesScriptedReader(reply=reply, window=8192, reserved_output=512),
        script=[
            calls(call("ask", question="When does the probe launch?", spans=[[at - 2000, at + 2000]])),
            calls(call("final", answer="See the reading.", citations=[])),
        ],
    )
    graph = create_rlm_graph(navigator, context_window=8192, cache=False, mode="navigate")
    graph.invoke({"document": doc, "question": "When does the probe launch?"})
    (result,) = tool_results(navigator.root_prompts[-1])
    assert "The part states when the probe launches:" in result
    assert "14 March 2031" in result


async def test_a_long_part_is_normalized_in_slices_with_the_loop_given_back(
    frankenstein: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Normalizing walks the part in Python (16 ms for 65,000 characters, longer for the
    # larger parts a big window allows): an async run's loop turns between slices of it.
    part = frankenstein[:100_000]
    sentence = " ".join(part[50_000:50_400].split())
    misquoted = sentence.replace(" the ", " ", 1)
    assert misquoted != sentence
    slices: list[tuple[int, int]] = []
    original = quotes_module._normalized
    async with LoopTurns() as turns:

        def counted(text: str, offset: int = 0) -> tuple[str, list[int]]:
            if len(text) > len(misquoted):
                slices.append((turns.now, len(text)))
            return original(text, offset)

        monkeypatch.setattr(quotes_module, "_normalized", counted)
        reading = await arun_steps(quote_steps(f'Report.\nQUOTE: "{misquoted}"', part, 0, len(part)))
    assert len(reading.citations) == 1
    assert sum(size for _, size in slices) == len(part)
    assert len(slices) >= 4
    assert all(later > earlier for (earlier, _), (later, _) in itertools.pairwise(slices))
    # Sliced, the part is normalized as it would be whole, runs of whitespace across a cut too.
    spaced = part.replace(". ", ".  \n ")
    assert quotes_module._Part(spaced).normal() == original(spaced)

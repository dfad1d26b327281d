"""Quote-level citations: a citation points at the supporting sentence, not the whole part."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from rlm_graph import create_rlm_graph
from rlm_graph import quotes as quotes_module
from rlm_graph.quotes import locate_quote, quote_citations, split_quotes
from rlm_graph.sentences import split_sentences
from tests.fakes import NEEDLE, PerfectReader, plant_needles
from tests.helpers import collect
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
    span = locate_quote(quote, part)
    assert span is not None
    assert part[span[0] : span[1]] == 'he said, "I will be with you on your wedding-night."  And he\nvanished  at once.'
    # A dropped word is a small difference: the tolerant match still finds the sentence.
    span = locate_quote("I will be with you on wedding-night", part)
    assert span is not None
    assert "wedding-night" in part[span[0] : span[1]]
    # An ellipsis joins two pieces of the part.
    span = locate_quote("Then he said ... vanished at once", part)
    assert span is not None
    assert part[span[0] : span[1]].startswith("Then")
    assert part[span[0] : span[1]].endswith("once")
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
    document = EXAMPLE.read_bytes().decode("utf-8")
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

    def counted(text: str) -> tuple[str, list[int]]:
        calls.append(len(text))
        return original(text)

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

"""Citations a person can trust at a glance (issue 28, part 2).

Quote-level and part-level citations say which they are; a part-level one points at its
nearest sentence; each citation knows the answer sentences that use it; the same file is
cited at the same offsets on every surface; the offline model answers only what matches.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from rlm_graph import ExtractiveChatModel, create_rlm_graph
from rlm_graph.citations import describe_citation, mark_answer, part_citation
from rlm_graph.documents import normalize_text
from rlm_graph.file_input import read_document, read_file
from rlm_graph.prompts import NO_RELEVANT_INFORMATION, link_citation_markers, strip_citation_markers
from tests.fakes import NEEDLE, PerfectReader, filler
from tests.openai_server import ChatServer, default_structured_reply
from tests.test_cli import EXAMPLE, QUESTION, run_cli

ROOT = Path(__file__).resolve().parent.parent
HORSE = "What is the name of Mr. Darcy's horse?"
ESTATE_SENTENCE = "Mr. Bennet’s property consisted almost entirely in an estate of two"


class UnquotingReader(PerfectReader):
    """Reports the facts of a part without quoting them (so citations are part-level), and
    synthesizes one sentence per fact, each followed by the ``[Fn]`` of its finding."""

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        prompt = "\n".join(m.text for m in messages)
        self._prompts.append(prompt)
        findings = re.findall(r'<finding id="F(\d+)">\n(.*?)\n</finding>', prompt, re.DOTALL)
        if findings:
            lines = [f"{fact}. [F{n}]" for n, text in findings for fact in sorted(set(NEEDLE.findall(text)))]
            reply = "\n".join(lines) or NO_RELEVANT_INFORMATION
        else:
            facts = sorted(set(NEEDLE.findall(prompt)))
            reply = "; ".join(facts) if facts else NO_RELEVANT_INFORMATION
        return ChatResult(generations=[ChatGeneration(message=AIMessage(reply))])


def two_fact_document() -> tuple[str, list[str]]:
    facts = ["NEEDLE-0001 is ALPHA", "NEEDLE-0002 is BRAVO"]
    text = "\n\n".join([filler(40, 1), facts[0] + ". " + filler(1, 2), filler(80, 3), facts[1] + ".", filler(40, 4)])
    return text, facts


# --- answer sentences and their markers ---------------------------------------------------


def test_each_marker_cites_the_sentence_it_ends() -> None:
    answer = "  Mr. Bennet had two thousand a year [F2]. It was entailed. [F1][F3] Lydia [F9] eloped."
    text, links = link_citation_markers(answer, range(1, 4))
    assert text == strip_citation_markers(answer, range(1, 4))
    cited = {number: [text[start:end] for start, end in spans] for number, spans in links.items()}
    assert cited == {2: ["Mr. Bennet had two thousand a year."], 1: ["It was entailed."], 3: ["It was entailed."]}
    # An unknown finding number is content, not a marker: it stays and cites nothing.
    assert "[F9]" in text
    assert 9 not in links


def test_list_items_are_sentences_and_an_opening_marker_cites_the_first() -> None:
    text, links = link_citation_markers("- A is 1 [F1]\n- B is 2 [F2][F1]", range(1, 3))
    assert {n: [text[s:e] for s, e in spans] for n, spans in links.items()} == {
        1: ["- A is 1", "- B is 2"],
        2: ["- B is 2"],
    }
    text, links = link_citation_markers("[F1] Start here. Then more.", range(1, 2))
    assert [text[s:e] for s, e in links[1]] == ["Start here."]


def test_mark_answer_numbers_markers_as_the_citations_list() -> None:
    answer = "One. Two and three."
    citations = [
        {"start": 0, "end": 5, "answer_spans": [{"start": 5, "end": 19}]},
        {"start": 9, "end": 12, "answer_spans": [{"start": 0, "end": 4}, {"start": 5, "end": 19}]},
        {"start": 20, "end": 30, "answer_spans": []},
    ]
    assert mark_answer(answer, citations) == "One.[2] Two and three.[1][2]"
    assert mark_answer(answer, [{"start": 0, "end": 1}]) == answer


def test_a_part_is_described_as_a_part_and_a_quote_as_a_quote() -> None:
    text = "Filler words here. NEEDLE-0042 is VAULTCODE. More filler words."
    part = part_citation(text, 100, 100 + len(text), "NEEDLE-0042 is VAULTCODE")
    assert part["kind"] == "part"
    assert part["sentence"] == {"start": 119, "end": 144, "text": "NEEDLE-0042 is VAULTCODE."}
    line = describe_citation(part)
    assert line == (
        "part, characters 100-163 (63 characters), nearest sentence at 119-144: NEEDLE-0042 is VAULTCODE."
    )
    assert '"' not in line  # a pointer, not a quote
    quote = {"start": 119, "end": 144, "kind": "quote", "quote": "NEEDLE-0042 is VAULTCODE.", "page": 3, "last_page": 3}
    assert describe_citation(quote) == 'quote, page 3, characters 119-144: "NEEDLE-0042 is VAULTCODE."'
    # Made before kind existed: a quote when it has one.
    assert describe_citation({"start": 0, "end": 9, "quote": "Mr. Bennet"}).startswith("quote, ")
    assert describe_citation({"start": 0, "end": 9}).startswith("part, characters 0-9 (9 characters), no sentence")


# --- the graph's output -------------------------------------------------------------------


async def test_part_level_citations_point_at_their_sentence_and_the_answer_sentence_using_them() -> None:
    document, facts = two_fact_document()
    graph = create_rlm_graph(UnquotingReader(window=2048, reserved_output=256), max_output_tokens=256, cache=False)
    out = await graph.ainvoke({"document": document, "question": "What are NEEDLE-0001 and NEEDLE-0002?"})
    assert out["answer"] == f"{facts[0]}.\n{facts[1]}."
    assert len(out["citations"]) == 2
    for citation, fact in zip(out["citations"], facts, strict=True):
        assert citation["kind"] == "part"
        assert "quote" not in citation
        assert citation["end"] - citation["start"] > 1000  # a whole part
        sentence = citation["sentence"]
        assert document[sentence["start"] : sentence["end"]] == sentence["text"] == fact + "."
        assert citation["start"] <= sentence["start"] < sentence["end"] <= citation["end"]
        (span,) = citation["answer_spans"]
        assert out["answer"][span["start"] : span["end"]] == fact + "."
    assert mark_answer(out["answer"], out["citations"]) == f"{facts[0]}.[1]\n{facts[1]}.[2]"


async def test_offline_answer_cites_only_the_quotes_its_sentences_use() -> None:
    document = read_file(EXAMPLE).text
    out = await create_rlm_graph(ExtractiveChatModel()).ainvoke({"document": document, "question": QUESTION})
    assert "two thousand a year" in " ".join(out["answer"].split())
    assert 1 <= len(out["citations"]) <= 3
    for citation in out["citations"]:
        assert citation["kind"] == "quote"
        assert document[citation["start"] : citation["end"]] == citation["quote"]
        # The offline model's answer sentences are its quotes: each is linked to its own.
        assert [" ".join(out["answer"][s["start"] : s["end"]].split()) for s in citation["answer_spans"]] == [
            " ".join(citation["quote"].split())
        ]


async def test_offline_model_says_not_found_when_nothing_matches_the_key_terms() -> None:
    document = read_file(EXAMPLE).text
    out = await create_rlm_graph(ExtractiveChatModel()).ainvoke({"document": document, "question": HORSE})
    assert "does not appear to contain" in out["answer"]
    assert out["citations"] == []


def test_offline_reader_quotes_only_sentences_holding_the_rare_key_term() -> None:
    model = ExtractiveChatModel()
    # As in a novel: "Mr. Darcy" in many sentences, "name" in a few, "horse" in one.
    common = " ".join(f"Mr. Darcy walked to the house number {i}." for i in range(20))
    some = " ".join(f"The name of street {i} was old." for i in range(5))
    horse = "Mr. Darcy rode his horse Brutus to the village."
    part = f"{common} {some} Mr. Darcy spoke of his name and his estate. {horse}"
    prompt = f'<document_part start="0" end="{len(part)}">\n{part}\n</document_part>\n<question>{HORSE}</question>'
    reply = model.invoke(prompt).text
    assert re.findall(r'^QUOTE: "(.*)"$', reply, re.MULTILINE) == [horse]
    without = part.replace(" " + horse, "")
    prompt = f'<document_part start="0" end="0">\n{without}\n</document_part>\n<question>{HORSE}</question>'
    assert model.invoke(prompt).text == NO_RELEVANT_INFORMATION
    # The threshold is the model's own setting: at 0 any shared word qualifies again.
    assert ExtractiveChatModel(min_weight=0.0).invoke(prompt).text != NO_RELEVANT_INFORMATION


# --- one offsets rule ---------------------------------------------------------------------


def test_bom_and_crlf_file_reads_as_its_paste(tmp_path: Path) -> None:
    pasted = "Line one.\nThe rent is forty pounds.\n\nLast line.\n"
    path = tmp_path / "windows.txt"
    path.write_bytes(b"\xef\xbb\xbf" + pasted.replace("\n", "\r\n").encode("utf-8"))
    assert read_file(path).text == pasted
    assert read_document(pasted.encode(), "utf-8", "pasted text").text == pasted
    assert normalize_text("a\rb\r\nc\ufeff") == "a\nb\nc\ufeff"  # only a leading BOM is one
    book = read_file(EXAMPLE).text
    assert not book.startswith("\ufeff")
    assert "\r" not in book
    assert book == EXAMPLE.read_text(encoding="utf-8-sig")  # what Python's own reading gives


def _estate_range(text: str) -> tuple[int, int]:
    """The characters a-b of the citation line holding the estate sentence."""
    line = next(line for line in text.splitlines() if ESTATE_SENTENCE in line and "characters" in line)
    found = re.search(r"characters (\d+)-(\d+)", line)
    assert found, line
    return int(found[1]), int(found[2])


def test_cli_and_chat_service_cite_the_book_at_the_same_offsets() -> None:
    cli = run_cli("ask", str(EXAMPLE), QUESTION)
    assert cli.returncode == 0, cli.stderr
    chat = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "chat_service.py"), str(EXAMPLE), QUESTION],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
        timeout=300,
        check=False,
    )
    assert chat.returncode == 0, chat.stderr
    start, end = _estate_range(cli.stdout)
    assert _estate_range(chat.stdout) == (start, end)
    assert read_file(EXAMPLE).text[start:end].startswith("Mr. Bennet’s property")
    as_json = json.loads(run_cli("ask", str(EXAMPLE), QUESTION, "--json").stdout)
    assert (start, end) in {(c["start"], c["end"]) for c in as_json["citations"]}


# --- the command line, through its process ------------------------------------------------


def test_cli_marks_the_answer_and_labels_quotes() -> None:
    result = run_cli("ask", str(EXAMPLE), QUESTION)
    assert result.returncode == 0, result.stderr
    answer, _, rest = result.stdout.partition("\n\nCitations:\n")
    assert "deficiency of his.[1]" in answer
    lines = [line for line in rest.splitlines() if line.startswith("[")]
    assert 1 <= len(lines) <= 3
    assert re.fullmatch(r'\[1\] quote, characters \d+-\d+: "Mr\. Bennet’s property consisted .*…"', lines[0])


def test_cli_says_not_found_for_a_question_the_book_does_not_answer() -> None:
    result = run_cli("ask", str(EXAMPLE), HORSE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("The document does not appear to contain information that answers this question.")
    assert "Citations:" not in result.stdout


def test_cli_shows_a_part_level_citation_as_a_part_with_its_nearest_sentence(tmp_path: Path) -> None:
    """The issue's case: a real ChatOpenAI reader that quotes nothing, so the whole part is cited."""
    filler_text = "Nothing of note happens on this ordinary day in the village. " * 12
    paragraphs = [filler_text for _ in range(60)]
    paragraphs[10] = "NEEDLE-0042 is VAULTCODE. " + filler_text
    path = tmp_path / "long.txt"
    document = "\n\n".join(paragraphs)
    path.write_text(document, encoding="utf-8")
    with ChatServer(window=4096, structured_reply=quoting_nothing) as server:
        result = run_cli(
            "ask", str(path), "What is NEEDLE-0042?", "--context-window", "4096", OPENAI_BASE_URL=server.base_url
        )
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("[1]"))
    found = re.fullmatch(
        r"\[1\] part, characters (\d+)-(\d+) \(([\d,]+) characters\), nearest sentence at (\d+)-(\d+): "
        r"NEEDLE-0042 is VAULTCODE\.",
        line,
    )
    assert found, line
    start, end, size, first, last = (int(g.replace(",", "")) for g in found.groups())
    assert end - start == size > 1000
    assert document[first:last] == "NEEDLE-0042 is VAULTCODE."
    assert '"NEEDLE-0042' not in result.stdout  # never shown as a quote


def quoting_nothing(name: str, facts: list[str], schema: dict[str, Any], label: str = "") -> dict[str, Any]:
    """The local server's structured reply, with no supporting quotes (so the part is cited)."""
    reply = default_structured_reply(name, facts, schema, label)
    return {**reply, "quotes": []} if "quotes" in reply else reply


def _json_citations(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["citations"]


def test_json_output_carries_kind_and_answer_spans() -> None:
    citations = _json_citations(run_cli("ask", str(EXAMPLE), QUESTION, "--json"))
    assert citations
    assert all(c["kind"] == "quote" and c["answer_spans"] for c in citations)

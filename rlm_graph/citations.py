"""Citations as a person reads them: quote-level or part-level, and linked to the answer.

A quote-level citation is a located passage; a part-level one is a whole part (no quote
could be located), which may be tens of thousands of characters. Surfaces must not show
the second like the first: :func:`describe_citation` says ``part``, the part's range and
its size, and the part's sentence nearest to what was reported (:func:`part_citation`
finds it), which a page highlights strongly inside the faintly highlighted part.

Each citation of a final answer carries ``answer_spans``, the answer's sentences that use
it; :func:`mark_answer` puts ``[1]``, ``[2]``... after them, numbered as the citations list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rlm_graph.sentences import rank_sentences, sentence_spans
from rlm_graph.state import Citation, Sentence

__all__ = ["citation_kind", "describe_citation", "mark_answer", "nearest_sentence", "part_citation"]

_SHOWN_CHARS = 160
"""Longest quote or sentence a one-line description shows (longer ones end in "…")."""


def nearest_sentence(text: str, start: int, end: int, evidence: str) -> Sentence | None:
    """The sentence of ``text[start:end]`` that best matches ``evidence`` (BM25 over its sentences).

    Args:
        text: The text the offsets refer to (the document, or a part with ``start`` 0).
        start: Span start.
        end: Span end.
        evidence: What the sentence should match: a reader's report, or an answer.

    Returns:
        The sentence, in ``text`` offsets, or ``None`` when no sentence shares a content word with ``evidence``.
    """
    span = text[start:end]
    spans = sentence_spans(span)
    best = rank_sentences(evidence, [span[s:e] for s, e in spans], 1, min_share=0.0)
    if not best:
        return None
    first, last = spans[best[0]]
    return {"start": start + first, "end": start + last, "text": span[first:last]}


def part_citation(part_text: str, part_start: int, part_end: int, evidence: str) -> Citation:
    """A part-level citation: the whole part, with its sentence nearest to ``evidence``.

    Args:
        part_text: The part's text, ``document[part_start:part_end]``.
        part_start: The part's offset in the root document.
        part_end: The part's end in the root document.
        evidence: What was read from the part (the reader's report, or a one-call answer).

    Returns:
        The citation (``kind`` ``"part"``); ``sentence`` in root-document offsets when one matches.
    """
    citation: Citation = {"start": part_start, "end": part_end, "kind": "part"}
    sentence = nearest_sentence(part_text, 0, len(part_text), evidence)
    if sentence is not None:
        citation["sentence"] = {
            "start": part_start + sentence["start"],
            "end": part_start + sentence["end"],
            "text": sentence["text"],
        }
    return citation


def citation_kind(citation: Mapping[str, Any]) -> str:
    """``"quote"`` or ``"part"``; a citation made before ``kind`` existed is a quote when it has one."""
    return citation.get("kind") or ("quote" if "quote" in citation else "part")


def _shown(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1].rstrip() + "…"


def _pages(citation: Mapping[str, Any]) -> str:
    if "page" not in citation:
        return ""
    if citation["page"] == citation["last_page"]:
        return f"page {citation['page']}, "
    return f"pages {citation['page']}-{citation['last_page']}, "


def describe_citation(citation: Mapping[str, Any]) -> str:
    """One line saying what a citation is, as the CLI prints it.

    A quote: ``quote, characters 43684-43987: "..."``. A part: ``part, characters
    131281-197922 (66,641 characters), nearest sentence at 150000-150025: ...`` (the
    sentence is not put in quotation marks: it is a pointer, not a quote). A PDF's
    citations start with their pages (``page 3, ``).

    Args:
        citation: A citation (with ``page``/``last_page`` when on PDF pages).

    Returns:
        The line, without its number.
    """
    where = f"{_pages(citation)}characters {citation['start']}-{citation['end']}"
    if citation_kind(citation) == "quote" and "quote" in citation:
        return f'quote, {where}: "{_shown(citation["quote"])}"'
    size = citation["end"] - citation["start"]
    line = f"part, {where} ({size:,} characters)"
    sentence = citation.get("sentence")
    if sentence is None:
        return line + ", no sentence of it matches the answer"
    return f"{line}, nearest sentence at {sentence['start']}-{sentence['end']}: {_shown(sentence['text'])}"


def mark_answer(answer: str, citations: Sequence[Mapping[str, Any]]) -> str:
    """The answer with ``[n]`` after each sentence that uses citation ``n`` (numbered from 1).

    Args:
        answer: The final answer, as the graph returned it.
        citations: Its citations, in the order they are numbered.

    Returns:
        The answer with markers (``...a year.[1][4]``); unchanged when no citation has ``answer_spans``.
    """
    at: dict[int, set[int]] = {}
    for number, citation in enumerate(citations, start=1):
        for span in citation.get("answer_spans") or ():
            at.setdefault(min(span["end"], len(answer)), set()).add(number)
    pieces: list[str] = []
    done = 0
    for end in sorted(at):
        pieces.append(answer[done:end] + "".join(f"[{n}]" for n in sorted(at[end])))
        done = end
    return "".join(pieces) + answer[done:]

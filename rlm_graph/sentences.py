"""Sentences of a text and their BM25 ranking against a question (offline, no model).

Used by the offline extractive model (:mod:`rlm_graph.offline`) and by the CLI to
quote the sentence of a cited span that best matches the answer.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from rlm_graph.bm25 import idf, saturation

__all__ = ["rank_sentences", "sentence_spans", "split_sentences"]

_WORD = re.compile(r"\w+", re.UNICODE)
_SENTENCE_END = re.compile(r"[.!?。！？][\"'”’)\]]*\s+|\n\s*\n")
# In an answer a line break ends a sentence too (a list item, a heading); in a document it does
# not, since hard-wrapped prose breaks lines in mid-sentence.
_SENTENCE_OR_LINE_END = re.compile(_SENTENCE_END.pattern + r"|\n\s*")
_ABBREVIATION = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Dr|St|Sr|Jr|Prof|Rev|Col|Capt|Gen|Lt|vs|etc|e\.g|i\.e)|\b[A-Z])\.\s+$")
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "she",
        "so",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "whose",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "about",
        "all",
        "any",
        "tell",
        "us",
        "give",
        "list",
        "find",
        "document",
        "text",
    ]
)


def _stem(word: str) -> str:
    if len(word) > 4:
        for suffix, replacement in (("ies", "y"), ("ied", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
            if word.endswith(suffix):
                return word[: -len(suffix)] + replacement
    return word


def _terms(text: str) -> list[str]:
    return [_stem(w) for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in _STOPWORDS]


def sentence_spans(text: str, *, line_breaks: bool = False) -> list[tuple[int, int]]:
    """Where the sentences of a text are: ``(start, end)`` offsets, surrounding whitespace excluded.

    Args:
        text: Any text.
        line_breaks: Whether a single line break also ends a sentence (an answer's list
            items); by default only a blank line does, as hard-wrapped prose breaks lines anywhere.

    Returns:
        The spans, in order; ``text[start:end]`` is a sentence as written (whitespace inside kept).
    """
    ends = _SENTENCE_OR_LINE_END if line_breaks else _SENTENCE_END
    spans, start = [], 0
    for match in ends.finditer(text):
        broken = line_breaks and "\n" in match.group()
        if not broken and _ABBREVIATION.search(text, max(start, match.start() - 8), match.end()):
            continue
        spans.append((start, match.end()))
        start = match.end()
    spans.append((start, len(text)))
    trimmed = []
    for begin, end in spans:
        piece = text[begin:end]
        stripped = piece.strip()
        if stripped:
            begin += len(piece) - len(piece.lstrip())
            trimmed.append((begin, begin + len(stripped)))
    return trimmed


def split_sentences(text: str) -> list[str]:
    """Split text into sentences, whitespace collapsed; "Mr." and initials do not end one.

    Args:
        text: Any text.

    Returns:
        The sentences.
    """
    text = text.replace("\u200b", "")
    return [" ".join(text[start:end].split()) for start, end in sentence_spans(text)]


def rank_sentences(
    question: str, sentences: Sequence[str], limit: int, *, min_share: float = 0.5, min_weight: float = 0.0
) -> list[int]:
    """Indices of the sentences that best match the question, best first.

    A sentence qualifies when it contains at least ``min_share`` of the
    question's distinct content words, and at least one, and when the words it
    contains carry at least ``min_weight`` of the question's weight (each word
    weighs its BM25 idf over ``sentences``: a word few sentences hold, such as
    "horse", outweighs one most hold, such as "Mr"). BM25 decides the order.

    Args:
        question: The question.
        sentences: Candidate sentences.
        limit: Most indices to return.
        min_share: Share of the question's content words a sentence must contain.
        min_weight: Share of the question's idf weight a sentence's words must carry.

    Returns:
        Indices into ``sentences``.
    """
    query = set(_terms(question))
    if not query or not sentences:
        return []
    docs = [Counter(_terms(s)) for s in sentences]
    average = sum(sum(d.values()) for d in docs) / len(docs) or 1.0
    frequency = Counter(term for d in docs for term in query if term in d)
    weight = {term: idf(len(docs), frequency[term]) for term in query}
    total = sum(weight.values())
    needed = max(1, math.ceil(len(query) * min_share))
    scored = []
    for index, doc in enumerate(docs):
        matched = [t for t in query if t in doc]
        if len(matched) < needed or sum(weight[t] for t in matched) < min_weight * total:
            continue
        length = sum(doc.values())
        score = 0.0
        for term in matched:
            score += weight[term] * saturation(doc[term], length, average)
        scored.append((score, index))
    scored.sort(key=lambda pair: (-pair[0], pair[1]))
    return [index for _, index in scored[:limit]]

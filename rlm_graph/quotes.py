"""Quote-level citations: find a reader's supporting quotes in the part it read.

The reading prompt asks for one ``QUOTE: "..."`` line per supporting passage at the end
of a reading. Each quote is looked up in the part's text: exactly first, then with
whitespace, quotation marks, dashes and case made uniform, then with a tolerant match
(rapidfuzz) for small differences such as a dropped word. A reader that ignores the
format still yields quotes: any passage of its reply inside double quotation marks is
tried too. A quote that cannot be found is not a citation: it is counted, as a cheap
check against readers inventing text.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from rapidfuzz import fuzz

from rlm_graph.state import Citation

__all__ = ["QuotedReading", "locate_quote", "quote_citations", "split_quotes"]


# QUOTE: "..." on a line of its own, with whatever Markdown decoration a model adds (- **QUOTE:** "...").
_QUOTE_LINE = re.compile(r"^[ \t>*_`\-]*quote[ \t*_`]*:[ \t*_`]*(?P<quote>.+?)[ \t*_`]*$", re.IGNORECASE)
# Passages inside double quotation marks (straight or curly) in free text.
_INLINE = re.compile(r"\"([^\"\n]{8,}?)\"|\u201c([^\u201c\u201d\n]{8,}?)\u201d")
_QUOTE_MARKS = "\"'\u201c\u201d\u2018\u2019\u00ab\u00bb\u201e"
_ELLIPSIS = re.compile(r"\s*(?:\.\.\.|\u2026|\[\.\.\.\])\s*")
_UNIFORM = str.maketrans(
    {
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2018": "'",
        "\u2019": "'",
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u00a0": " ",
    }
)
_MIN_FUZZY_CHARS = 16
"""Shorter quotes must match exactly (after normalising): a fuzzy short match lands anywhere."""
_FUZZY_SCORE = 85.0
"""Least rapidfuzz ``partial_ratio`` (0-100) for a tolerant match: a dropped or changed word in a
sentence-long quote scores about 85-95; an unrelated sentence of the part far less."""


@dataclass
class QuotedReading:
    """A reading split into its report and its located quotes."""

    text: str
    """The reading without its ``QUOTE:`` lines (the quotes themselves when it had nothing else)."""
    citations: list[Citation] = field(default_factory=list)
    """One citation per located quote, in the part's order, duplicates merged."""
    unsupported: list[str] = field(default_factory=list)
    """Quotes that could not be found in the part."""


def split_quotes(reply: str) -> tuple[str, list[str], bool]:
    """Separate a reading's ``QUOTE:`` lines from its report.

    Args:
        reply: The reader's reply.

    Returns:
        The report without the quote lines (stripped), the quotes, and whether the reply
        used the ``QUOTE:`` format at all. Without it, the quotes are the passages inside
        double quotation marks (at least 8 characters), as real models often quote that way.
    """
    kept: list[str] = []
    quotes: list[str] = []
    for line in reply.splitlines():
        match = _QUOTE_LINE.match(line)
        if match is None:
            kept.append(line)
            continue
        quote = match.group("quote").strip()
        closing = max(quote.rfind(mark) for mark in _QUOTE_MARKS) if quote[:1] in _QUOTE_MARKS else -1
        if closing > 0:
            # Text after the closing quotation mark is the reader's, not the quote's.
            rest = quote[closing + 1 :].strip(" \t*_`")
            quote = quote[1:closing].strip()
            if rest:
                kept.append(rest)
        if quote:
            quotes.append(quote)
    report = "\n".join(kept).strip()
    if quotes:
        return report, quotes, True
    inline = [a or b for a, b in _INLINE.findall(reply)]
    return report, [q.strip() for q in inline if q.strip()], False


def _normalized(text: str) -> tuple[str, list[int]]:
    """``text`` with uniform quotation marks, dashes, case and single spaces, and each character's source index."""
    chars: list[str] = []
    index: list[int] = []
    previous_space = True
    for position, char in enumerate(text.translate(_UNIFORM)):
        if char.isspace():
            if previous_space:
                continue
            char = " "
            previous_space = True
        else:
            previous_space = False
        chars.append(char.casefold()[:1] or char)
        index.append(position)
    return "".join(chars), index


def _source_span(index: list[int], start: int, end: int) -> tuple[int, int]:
    return index[start], index[end - 1] + 1


_Normal = Callable[[], tuple[str, list[int]]]
"""The text normalized (see :func:`_normalized`), computed on first use and then kept."""


def _locate_piece(quote: str, text: str, normal: _Normal, after: int) -> tuple[int, int] | None:
    exact = text.find(quote, after)
    if exact >= 0:
        return exact, exact + len(quote)
    norm_text, index = normal()
    norm_quote = _normalized(quote)[0].strip()
    if not norm_quote:
        return None
    norm_after = bisect.bisect_left(index, after)
    found = norm_text.find(norm_quote, norm_after)
    if found >= 0:
        return _source_span(index, found, found + len(norm_quote))
    if len(norm_quote) < _MIN_FUZZY_CHARS:
        return None
    alignment = fuzz.partial_ratio_alignment(norm_quote, norm_text[norm_after:], score_cutoff=_FUZZY_SCORE)
    if alignment is None or alignment.dest_end <= alignment.dest_start:
        return None
    # A window much shorter than the quote matched only part of it.
    if (alignment.dest_end - alignment.dest_start) < 0.8 * len(norm_quote):
        return None
    start, end = _source_span(index, norm_after + alignment.dest_start, norm_after + alignment.dest_end)
    # The tolerant match compares windows as long as the quote: a dropped word leaves the
    # window short of the passage's last word, so extend it to whole words.
    while start > 0 and text[start - 1].isalnum():
        start -= 1
    while end < len(text) and text[end].isalnum():
        end += 1
    return start, end


def locate_quote(quote: str, text: str) -> tuple[int, int] | None:
    """Find a quote in a text: exactly, then normalised, then tolerantly.

    Normalising makes whitespace, quotation marks (straight or curly), dashes and case
    uniform; the tolerant match (rapidfuzz ``partial_ratio``, score 85 or more, quotes of 16+ characters) accepts
    small differences such as a changed or dropped word. A quote with an ellipsis
    (``...``) is found piece by piece, in order, and spans from its first to its last piece.

    Args:
        quote: The quote, without its quotation marks.
        text: The text it should come from.

    Returns:
        ``(start, end)`` offsets into ``text``, or ``None`` when it is not there.
    """
    return _locate(quote, text, _normal_of(text))


def _normal_of(text: str) -> _Normal:
    # Normalizing walks the whole text in Python: it is done only when a quote is not
    # found as written, and once for all the quotes of a part.
    return functools.cache(lambda: _normalized(text))


def _locate(quote: str, text: str, normal: _Normal) -> tuple[int, int] | None:
    pieces = [piece for piece in _ELLIPSIS.split(quote.strip()) if piece.strip()]
    if not pieces:
        return None
    spans: list[tuple[int, int]] = []
    after = 0
    for piece in pieces:
        span = _locate_piece(piece.strip(), text, normal, after)
        if span is None:
            return None
        spans.append(span)
        after = span[1]
    start, end = spans[0][0], spans[-1][1]
    # Trim what a tolerant match took from around the passage.
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None


def quote_citations(reply: str, part_text: str, part_start: int, part_end: int) -> QuotedReading:
    """Turn a reading's quotes into citations of the root document.

    Args:
        reply: The reader's reply (its confidence line already removed).
        part_text: The part's text, ``document[part_start:part_end]``.
        part_start: The part's offset in the root document.
        part_end: The part's end in the root document.

    Returns:
        The report without its quote lines, one citation per located quote
        (``kind`` ``"quote"``, ``start``/``end`` of the passage, ``quote`` its text, ``part`` the part's range),
        and the quotes that were not found. No located quote: no citations (the caller
        cites the whole part).
    """
    report, quotes, formatted = split_quotes(reply)
    spans: dict[tuple[int, int], None] = {}
    unsupported: list[str] = []
    normal = _normal_of(part_text)
    for quote in quotes:
        span = _locate(quote, part_text, normal)
        if span is None:
            unsupported.append(quote)
        else:
            spans[span] = None
    citations: list[Citation] = [
        {
            "start": part_start + start,
            "end": part_start + end,
            "kind": "quote",
            "quote": part_text[start:end],
            "part": {"start": part_start, "end": part_end},
        }
        for start, end in sorted(spans)
    ]
    if formatted and not report:
        # The reading was only quotes: they are its report.
        report = "\n".join(f'"{quote}"' for quote in quotes)
    return QuotedReading(report if formatted else reply.strip(), citations, unsupported)

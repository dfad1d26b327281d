"""Quote-level citations: find a reader's supporting quotes in the part it read.

The reading prompt asks for one ``QUOTE: "..."`` line per supporting passage at the end
of a reading (a structured reply gives its quotes as a list instead). Each quote is
looked up in the part's text: exactly first, then with whitespace, quotation marks,
dashes and case made uniform, then with a tolerant match (rapidfuzz) for small
differences such as a dropped word. A tolerant match counts only when the quote's
numbers, negations and units agree with the text it landed on: a reader that misquotes
"1,804 units" as "1,204 units", or drops a "not", has not quoted the part. A quote with
an ellipsis or line breaks is found piece by piece, each piece after the one before and
near it, and each piece is cited on its own. A quote that cannot be found is not a
citation: it is counted, as a cheap check against readers inventing text.

What the reader quoted from the part reaches the synthesis: the finding is the reader's
report, then the located passages it does not already say, as they stand in the part.
An unsupported quote's words do not (they are unverified); a note says how many there were.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from rapidfuzz import fuzz
from rapidfuzz.distance import Indel

from rlm_graph.sentences import split_sentences
from rlm_graph.state import Citation
from rlm_graph.steps import Steps, run_steps

__all__ = ["QuotedReading", "cite_quotes", "locate_quote", "quote_citations", "quote_steps", "split_quotes"]


# QUOTE: "..." on a line of its own, with whatever Markdown decoration a model adds (- **QUOTE:** "...").
_QUOTE_LINE = re.compile(r"^[ \t>*_`\-]*quote[ \t*_`]*:[ \t*_`]*(?P<quote>.+?)[ \t*_`]*$", re.IGNORECASE)
# Passages inside double quotation marks (straight or curly) in free text.
_INLINE = re.compile(r"\"([^\"\n]{8,}?)\"|\u201c([^\u201c\u201d\n]{8,}?)\u201d")
_QUOTE_MARKS = "\"'\u201c\u201d\u2018\u2019\u00ab\u00bb\u201e"
_OPENING_MARKS = "\"\u201c\u00ab\u201e"
"""Double quotation marks that open a quote: one left open runs on to the line that closes it
(an apostrophe may open a word such as 'Tis)."""
_CLOSING_MARKS = "\"\u201d\u00bb\u201c"
_MAX_QUOTE_LINES = 40
"""Most lines a quotation that opens on a ``QUOTE:`` line may run over before it closes."""
# Where a quote leaves text out: it is found piece by piece (and so at line breaks, see _pieces).
_ELLIPSIS = re.compile(r"\s*(?:\.\.\.|\u2026|\[(?:\.\.\.|\u2026)\])\s*")
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
"""Least rapidfuzz score (0-100) for a tolerant match: a dropped or changed word in a
sentence-long quote scores about 85-95; an unrelated sentence of the part far less."""
_LONG_QUOTE = 600
"""A longer piece not found as written is located by its first and last sentences: the
tolerant search costs about the square of the quote's length times the part's (600
characters against a 16K-token part: 4 ms; 8,000 characters: 3.7 s)."""
_END_CHARS = 300
"""Most characters of a long piece's first or last sentence that are searched for."""
_NEAR = 500
"""Most characters between the end of one piece of a quote and the start of the next."""
_NORMAL_SLICE = 16_384
"""Characters of a part normalized between two pauses (about 4 ms of Python)."""
_SPACE = re.compile(r"\s")
_FIRST_TRIES = 16
"""Places of a quote's first piece from which the pieces after it are searched tolerantly
(from every place, they are searched as written)."""

# A number: digits grouped by thousands separators (a comma, point, apostrophe or space
# before three digits), an optional decimal mark, a currency sign before it, and the word
# or sign after it (checked against _UNITS).
_NUMBER = re.compile(
    r"(?P<sign>[$\u20ac\u00a3\u00a5\u20b9])?\s?"
    r"(?P<digits>\d+(?:(?:[,.'\u2019]|[ \u00a0\u202f\u2009](?=\d{3}(?!\d)))\d+)*)"
    r"(?:[ \u00a0\u202f\u2009]?(?P<unit>%|\u2030|\u00b0\s?[CF]\b|[^\W\d_]+))?"
)
_GROUP = re.compile(r"[,.'\u2019 \u00a0\u202f\u2009]")
_NEGATION = re.compile(
    r"\b(?:not|no|never|without|none|neither|nor|cannot|nothing|nobody|nowhere)\b|n['\u2019]t\b", re.IGNORECASE
)
_SIGNS = {"$": "dollar", "\u20ac": "euro", "\u00a3": "pound", "\u00a5": "yen", "\u20b9": "rupee"}
_UNIT_ALIASES = {
    "%": "percent",
    "\u2030": "permille",
    "\u00b0c": "celsius",
    "\u00b0f": "fahrenheit",
    "pct": "percent",
    "usd": "dollar",
    "eur": "euro",
    "gbp": "pound",
    "jpy": "yen",
    "inr": "rupee",
    "centuries": "century",
    "feet": "foot",
    "inches": "inch",
    "lbs": "lb",
    "metre": "meter",
    "litre": "liter",
    "tonne": "ton",
    "kilometre": "kilometer",
    "centimetre": "centimeter",
    "millimetre": "millimeter",
}
# What a number counts or scales by; an ordinary word after a number ("in 2019 the") is none.
_UNIT_WORDS = (
    "percent permille degree celsius fahrenheit kelvin hundred thousand million billion trillion bn mn "
    "mm cm m km mi mile yard yd ft foot inch meter kilometer centimeter millimeter "
    "mg g kg lb pound oz ounce gram kilogram milligram ton "
    "ml cl dl l liter gallon gal barrel bbl pint quart "
    "ms sec second min minute h hr hour day week month year yr decade century "
    "kb mb gb tb pb byte bit kbps mbps gbps "
    "w kw mw gw kwh mwh gwh j kj cal kcal v kv mah hz khz mhz ghz mph kph knot "
    "ha hectare acre dollar euro yen cent rupee yuan franc unit"
)
_UNITS = frozenset(_UNIT_WORDS.split())


@dataclass
class QuotedReading:
    """A reading's finding, its located quotes, and the quotes that are not in its part."""

    text: str
    """What the synthesis reads: the report, then each located passage it does not already
    say (as the part has it), then a note of how many quotes are not in the part."""
    citations: list[Citation] = field(default_factory=list)
    """One citation per located passage, in the part's order, duplicates merged."""
    unsupported: list[str] = field(default_factory=list)
    """Quotes that could not be found in the part."""
    contradicted: list[str] = field(default_factory=list)
    """The unsupported quotes whose closest passage has other numbers, units or negations:
    the part says otherwise, so the caller should not cite it for this reading."""


def _opening_unclosed(quote: str) -> bool:
    return quote[:1] in _OPENING_MARKS and max(quote.rfind(mark) for mark in _QUOTE_MARKS) <= 0


def split_quotes(reply: str) -> tuple[str, list[str], bool]:
    """Separate a reading's ``QUOTE:`` lines from its report.

    A quotation that opens on a ``QUOTE:`` line and closes on a later line (a quoted
    verse, a table's rows) is one quote, its line breaks kept.

    Args:
        reply: The reader's reply.

    Returns:
        The report without the quote lines (stripped), the quotes, and whether the reply
        used the ``QUOTE:`` format at all. Without it, the quotes are the passages inside
        double quotation marks (at least 8 characters), as real models often quote that way.
    """
    kept: list[str] = []
    quotes: list[str] = []
    lines = reply.splitlines()
    index = 0
    while index < len(lines):
        match = _QUOTE_LINE.match(lines[index])
        index += 1
        if match is None:
            kept.append(lines[index - 1])
            continue
        quote = match.group("quote").strip()
        if _opening_unclosed(quote):
            for last in range(index, min(len(lines), index + _MAX_QUOTE_LINES)):
                if _QUOTE_LINE.match(lines[last]):
                    break
                if any(mark in lines[last] for mark in _CLOSING_MARKS):
                    quote = "\n".join([quote, *(line.strip() for line in lines[index : last + 1])])
                    quote = quote.rstrip(" \t*_`")
                    index = last + 1
                    break
            if _opening_unclosed(quote):
                # Never closed: the opening mark is not part of the quote.
                quote = quote[1:].strip()
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


def _normalized(text: str, offset: int = 0) -> tuple[str, list[int]]:
    """``text`` with uniform quotation marks, dashes, case and single spaces, and each character's source index.

    ``offset`` is added to the indices (``text`` is a slice of a longer text that starts there).
    """
    chars: list[str] = []
    index: list[int] = []
    previous_space = True
    for position, char in enumerate(text.translate(_UNIFORM), offset):
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


_Span = tuple[int, int]


class _Part:
    """A part's text, and its normalized form (see :func:`_normalized`), computed on first use."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._normal: tuple[str, list[int]] | None = None

    def normal(self) -> tuple[str, list[int]]:
        # Normalizing walks the whole text in Python: it is done only when a quote is not
        # found as written, and once for all the quotes of a part.
        if self._normal is None:
            run_steps(self.normalize())
        return self._normal  # type: ignore[return-value]

    def normalize(self) -> Steps[None]:
        """Normalize the text, if not done yet, in slices with a pause after each."""
        if self._normal is not None:
            return
        text, chars, index, start = self.text, [], [], 0
        while start < len(text):
            # A slice ends after a whitespace character, so the spaces the next one drops
            # at its start are those that this one kept at its end.
            space = _SPACE.search(text, min(len(text), start + _NORMAL_SLICE))
            stop = space.end() if space is not None else len(text)
            normal, positions = _normalized(text[start:stop], start)
            chars.append(normal)
            index.extend(positions)
            start = stop
            yield None
        self._normal = "".join(chars), index

    def normal_range(self, lo: int, hi: int) -> tuple[int, int]:
        """The normalized text's range that stands for ``text[lo:hi]``."""
        index = self.normal()[1]
        return bisect.bisect_left(index, lo), bisect.bisect_left(index, hi)

    def source(self, start: int, end: int) -> _Span:
        """The text's span of the normalized text's ``[start, end)``."""
        index = self.normal()[1]
        return index[start], index[end - 1] + 1


def _number_value(digits: str) -> str:
    """Digits with thousands separators dropped and the decimal mark written as a point."""
    groups = _GROUP.split(digits)
    value = groups[0]
    for group in groups[1:]:
        # Three digits after a separator group thousands; other counts follow a decimal mark.
        value += group if len(group) == 3 else "." + group
    if "." in value:
        value = value.rstrip("0").rstrip(".")
    return value


def _unit(word: str | None) -> str:
    if not word:
        return ""
    word = " ".join(word.casefold().split()).replace(" ", "")
    word = _UNIT_ALIASES.get(word, word)
    if word not in _UNITS and word.endswith("s") and word[:-1] in _UNITS:
        word = _UNIT_ALIASES.get(word[:-1], word[:-1])
    return word if word in _UNITS else ""


def _claims(text: str) -> tuple[list[tuple[str, tuple[str, ...]]], list[str]]:
    """What a passage asserts beyond its wording: its numbers with their units, and its negations."""
    numbers = []
    for match in _NUMBER.finditer(text):
        units = {_SIGNS.get(match["sign"] or "", ""), _unit(match["unit"])} - {""}
        numbers.append((_number_value(match["digits"]), tuple(sorted(units))))
    negations = []
    for match in _NEGATION.finditer(text):
        word = match.group().casefold().replace("\u2019", "'")
        negations.append("not" if word in {"n't", "cannot"} else word)
    return sorted(numbers), sorted(negations)


def _agrees(quote: str, located: str) -> bool:
    """Whether a tolerantly matched passage says what the quote says: same numbers, units and negations."""
    return _claims(quote) == _claims(located)


def _whole_words(text: str, start: int, end: int) -> _Span:
    # The tolerant match compares windows as long as the quote: a dropped word leaves the
    # window short of the passage's last word, so extend it to whole words.
    while start > 0 and text[start - 1].isalnum():
        start -= 1
    while end < len(text) and text[end].isalnum():
        end += 1
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _as_written(piece: str, part: _Part, lo: int, hi: int) -> Iterator[_Span]:
    """Where ``piece`` stands in ``part.text[lo:hi]`` as written, else normalized; first places first."""
    found = part.text.find(piece, lo, hi)
    if found >= 0:
        while found >= 0:
            yield found, found + len(piece)
            found = part.text.find(piece, found + 1, hi)
        return
    norm_piece = _normalized(piece)[0].strip()
    if not norm_piece:
        return
    norm_text = part.normal()[0]
    norm_lo, norm_hi = part.normal_range(lo, hi)
    found = norm_text.find(norm_piece, norm_lo, norm_hi)
    while found >= 0:
        yield part.source(found, found + len(norm_piece))
        found = norm_text.find(norm_piece, found + 1, norm_hi)


def _first_as_written(piece: str, part: _Part, lo: int, hi: int) -> _Span | None:
    return next(_as_written(piece, part, lo, hi), None)


def _aligned(norm_piece: str, part: _Part, lo: int, hi: int) -> _Span | None:
    """The tolerant match of a normalized piece of at most :data:`_LONG_QUOTE` characters in ``text[lo:hi]``."""
    norm_text = part.normal()[0]
    norm_lo, norm_hi = part.normal_range(lo, hi)
    alignment = fuzz.partial_ratio_alignment(norm_piece, norm_text[norm_lo:norm_hi], score_cutoff=_FUZZY_SCORE)
    if alignment is None or alignment.dest_end <= alignment.dest_start:
        return None
    # A window much shorter than the quote matched only part of it.
    if (alignment.dest_end - alignment.dest_start) < 0.8 * len(norm_piece):
        return None
    # The aligned window is as long as the quote, so a dropped word leaves it holding a
    # neighbour's first letters: the passage is where the quote's characters match.
    low = max(norm_lo, norm_lo + alignment.dest_start - _MIN_FUZZY_CHARS)
    window = norm_text[low : min(norm_hi, norm_lo + alignment.dest_end + _MIN_FUZZY_CHARS)]
    blocks = [block for block in Indel.opcodes(norm_piece, window).as_matching_blocks() if block.size]
    # A stray letter or two matched at either end is not where the passage starts or ends.
    while len(blocks) > 1 and blocks[0].size < 3:
        blocks.pop(0)
    while len(blocks) > 1 and blocks[-1].size < 3:
        blocks.pop()
    start, end = part.source(low + blocks[0].b, low + blocks[-1].b + blocks[-1].size)
    return _whole_words(part.text, start, end)


def _ends(piece: str) -> tuple[str, str]:
    """A long piece's first and last sentences, each cut to :data:`_END_CHARS` at a word."""
    sentences = split_sentences(piece)
    first, last = sentences[0], sentences[-1]
    if len(first) > _END_CHARS:
        first = first[: first.rfind(" ", 0, _END_CHARS) if " " in first[:_END_CHARS] else _END_CHARS]
    if len(last) > _END_CHARS:
        cut = last.find(" ", len(last) - _END_CHARS)
        last = last[cut + 1 if cut >= 0 else len(last) - _END_CHARS :]
    return first, last


_DISAGREES: _Span = (-1, -1)
"""A tolerant match whose numbers, units or negations differ from the quote's: the part says otherwise."""


def _tolerant(piece: str, part: _Part, lo: int, hi: int) -> Steps[_Span | None]:
    """Find a piece that is not in ``text[lo:hi]`` as written: tolerantly, then check that it agrees.

    Each search is followed by a pause, so an async run's event loop turns between them.

    Returns:
        The passage's span; ``None`` when nothing is close; :data:`_DISAGREES` when the
        closest passage says something else.
    """
    norm_piece = _normalized(piece)[0].strip()
    if len(norm_piece) < _MIN_FUZZY_CHARS:
        return None
    if len(norm_piece) <= _LONG_QUOTE:
        span = _aligned(norm_piece, part, lo, hi)
        yield None
        if span is None:
            return None
        return span if _agrees(piece, part.text[span[0] : span[1]]) else _DISAGREES
    # Too long to search for whole: find its first sentence, then its last sentence where
    # the piece's length says it ends, and check the passage between them against it.
    first_words, last_words = _ends(piece)
    first = _first_as_written(first_words, part, lo, hi)
    if first is None:
        first = yield from _tolerant(first_words, part, lo, hi)
    if first is None or first == _DISAGREES:
        return first
    end = min(len(part.text), first[0] + int(1.25 * len(piece)) + 64)
    last = None
    if len(last_words) <= len(piece) - len(first_words):
        last = _first_as_written(last_words, part, first[1], end)
        if last is None:
            last = yield from _tolerant(last_words, part, first[1], end)
    if last is None or last == _DISAGREES:
        return last
    start, stop = first[0], last[1]
    norm_span = _normalized(part.text[start:stop])[0]
    score = fuzz.ratio(norm_piece, norm_span, score_cutoff=_FUZZY_SCORE)
    yield None
    if not score:
        return None
    return (start, stop) if _agrees(piece, part.text[start:stop]) else _DISAGREES


def _pieces(quote: str, part: _Part) -> list[str]:
    """A quote's pieces: the stretches between its ellipses, each cut at its line breaks.

    A stretch that stands in the part as written stays whole: its reader only wrapped
    its lines elsewhere than the part.
    """
    pieces: list[str] = []
    for stretch in _ELLIPSIS.split(quote.strip()):
        if "\n" in stretch.strip() and _first_as_written(stretch.strip(), part, 0, len(part.text)) is None:
            pieces.extend(line.strip() for line in stretch.splitlines())
        else:
            pieces.append(stretch.strip())
    return [piece for piece in pieces if piece]


def _merged(text: str, spans: list[_Span]) -> list[_Span]:
    """Pieces that follow each other in the text with only whitespace between are one passage."""
    merged = [spans[0]]
    for start, end in spans[1:]:
        if text[merged[-1][1] : start].isspace() or merged[-1][1] == start:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _next_range(text: str, previous: _Span, piece: str) -> tuple[int, int]:
    """Where the piece after ``previous`` may stand: from its end, starting at most :data:`_NEAR` later."""
    return previous[1], min(len(text), previous[1] + _NEAR + int(1.25 * len(piece)) + 16)


def _follow_as_written(pieces: list[str], first: _Span, part: _Part) -> list[_Span] | None:
    spans = [first]
    for piece in pieces[1:]:
        lo, hi = _next_range(part.text, spans[-1], piece)
        span = _first_as_written(piece, part, lo, hi)
        if span is None or span[0] - lo > _NEAR:
            return None
        spans.append(span)
    return spans


def _follow(pieces: list[str], first: _Span, part: _Part) -> Steps[tuple[list[_Span] | None, bool]]:
    spans = [first]
    for piece in pieces[1:]:
        lo, hi = _next_range(part.text, spans[-1], piece)
        span = _first_as_written(piece, part, lo, hi)
        if span is None:
            span = yield from _tolerant(piece, part, lo, hi)
        if span is None or span == _DISAGREES or span[0] - lo > _NEAR:
            return None, span == _DISAGREES
        spans.append(span)
    return spans, False


def _locate(quote: str, part: _Part) -> Steps[tuple[list[_Span] | None, bool]]:
    """Find a quote's pieces in order, each near the one before; pause after each tolerant search.

    Returns:
        The pieces' spans (or ``None``), and whether a passage the quote landed on says otherwise.
    """
    if any(stretch.strip() not in part.text for stretch in _ELLIPSIS.split(quote.strip())):
        # Not all as written: the normalized part will be searched; built between pauses.
        yield from part.normalize()
    pieces = _pieces(quote, part)
    if not pieces:
        return None, False
    text = part.text
    # Every place of the first piece, with the rest as written (cheap: exact searches in
    # short ranges); then a few places, with the rest found tolerantly.
    firsts: list[_Span] = []
    best: list[_Span] | None = None
    for first in _as_written(pieces[0], part, 0, len(text)):
        if best is not None and first[0] >= best[1][0]:
            break
        if (spans := _follow_as_written(pieces, first, part)) is not None:
            if len(spans) == 1:
                return spans, False
            # A later place of the first piece before the second is closer to it: the
            # quote's own words are more likely one passage than a stretch of the part.
            best = spans
        elif best is None and len(firsts) < _FIRST_TRIES:
            firsts.append(first)
    if best is not None:
        return _merged(text, best), False
    contradicted = False
    if not firsts:
        span = yield from _tolerant(pieces[0], part, 0, len(text))
        contradicted = span == _DISAGREES
        firsts = [span] if span is not None and not contradicted else []
    for first in firsts:
        found, otherwise = yield from _follow(pieces, first, part)
        if found is not None:
            return _merged(text, found), False
        contradicted = contradicted or otherwise
    return None, contradicted


def locate_quote(quote: str, text: str) -> list[tuple[int, int]] | None:
    """Find a quote in a text: exactly, then normalised, then tolerantly.

    Normalising makes whitespace, quotation marks (straight or curly), dashes and case
    uniform. The tolerant match (rapidfuzz ``partial_ratio``, score 85 or more, quotes
    of 16+ characters) accepts small differences such as a dropped word, but only when
    the quote's numbers (thousands separators and decimal marks aside), units and
    negations are those of the passage it lands on. A quote with an ellipsis or line
    breaks is found piece by piece, each piece after the previous one and at most 500
    characters from it. A piece over 600 characters not found as written is located by
    its first and last sentences, and the passage between them must match it as a whole.

    Args:
        quote: The quote, without its quotation marks.
        text: The text it should come from.

    Returns:
        The ``(start, end)`` offsets into ``text`` of its pieces, in order (pieces that
        follow each other in ``text`` make one span), or ``None`` when it is not there.
    """
    return run_steps(_locate(quote, _Part(text)))[0]


def _words(text: str) -> str:
    return " " + " ".join(re.findall(r"\w+", text.casefold())) + " "


def _unsupported_note(unsupported: int, contradicted: int) -> str:
    """What the synthesis is told of quotes that are not in the part (never their words)."""
    verb = "is" if unsupported == 1 else "are"
    if not contradicted:
        reason = "unverified"
    elif unsupported == 1:
        reason = "its numbers, units or negations differ"
    else:
        reason = f"{contradicted} differ in numbers, units or negations"
    return f"({unsupported} of the reader's quotes {verb} not in the part as written: {reason})"


def cite_quotes(report: str, quotes: list[str], part_text: str, part_start: int, part_end: int) -> Steps[QuotedReading]:
    """Locate a reading's quotes in its part, as steps that pause after each tolerant search.

    The one mechanism for every reply format: a text reply goes through
    :func:`split_quotes` first (:func:`quote_steps`), a structured reply gives its report
    and quotes as they are. Run the steps with :func:`rlm_graph.steps.run_steps`, or
    ``yield from`` them in node logic, where an async run gives its event loop back at
    each pause.

    Args:
        report: The reader's report, without its quotes.
        quotes: Its quotes, without quotation marks.
        part_text: The part's text, ``document[part_start:part_end]``.
        part_start: The part's offset in the root document.
        part_end: The part's end in the root document.

    Returns:
        The finding (the report, then each located passage the report does not already
        say, in the part's words, then a note of how many quotes are not in the part,
        never their words: they are unverified), one citation per located passage
        (``kind`` ``"quote"``, ``start``/``end``, ``quote`` its text, ``part`` the part's range), the quotes
        that were not found, and those of them the part contradicts. No located quote: no
        citations (the caller cites the whole part, unless the part contradicts a quote).
    """
    part = _Part(part_text)
    report = report.strip()
    lines = [report] if report else []
    said = _words(report)
    spans: dict[_Span, None] = {}
    unsupported: list[str] = []
    contradicted: list[str] = []
    for quote in quotes:
        located, otherwise = yield from _locate(quote, part)
        if located is None:
            unsupported.append(quote)
            if otherwise:
                contradicted.append(quote)
            continue
        spans.update(dict.fromkeys(located))
        passage = " \u2026 ".join(" ".join(part_text[start:end].split()) for start, end in located)
        # Passed on once: a report that already says the quote word for word needs no copy.
        if _words(quote) not in said and _words(passage) not in said:
            lines.append(f'"{passage}"')
            said += _words(passage)
    if unsupported:
        lines.append(_unsupported_note(len(unsupported), len(contradicted)))
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
    return QuotedReading("\n".join(lines), citations, unsupported, contradicted)


def quote_steps(reply: str, part_text: str, part_start: int, part_end: int) -> Steps[QuotedReading]:
    """:func:`cite_quotes` for a text reply: its ``QUOTE:`` lines (or inline quotes) are its quotes.

    Args:
        reply: The reader's reply (its confidence line already removed).
        part_text: The part's text, ``document[part_start:part_end]``.
        part_start: The part's offset in the root document.
        part_end: The part's end in the root document.

    Returns:
        Steps that return the :class:`QuotedReading`.
    """
    report, quotes, _ = split_quotes(reply)
    return cite_quotes(report, quotes, part_text, part_start, part_end)


def quote_citations(reply: str, part_text: str, part_start: int, part_end: int) -> QuotedReading:
    """Turn a text reading's quotes into citations of the root document, at once (:func:`quote_steps`).

    Args:
        reply: The reader's reply (its confidence line already removed).
        part_text: The part's text, ``document[part_start:part_end]``.
        part_start: The part's offset in the root document.
        part_end: The part's end in the root document.

    Returns:
        The finding, its citations and its unsupported quotes (see :func:`cite_quotes`).
    """
    return run_steps(quote_steps(reply, part_text, part_start, part_end))

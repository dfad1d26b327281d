"""Token-aware splitting with exact character offsets.

The text is first cut into *units* no larger than the part budget, preferring
paragraph breaks, then line breaks, then sentence ends, then whitespace, and only
as a last resort cutting inside a word. Units are then packed into parts. Every
unit and part is a pair of offsets into the original string, so
``text[start:end]`` is always the part's text and the parts tile the text exactly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Boundary strength, strongest first. A cut goes right after the separator so the
# separator stays with the text before it.
_BOUNDARIES: tuple[re.Pattern[str], ...] = (
    re.compile(r"\n[^\S\n]*\n\s*"),  # paragraph break (blank line)
    re.compile(r"\n\s*"),  # line break
    re.compile(r"[.!?…][\"'”’»)\]]*\s+|[。！？]\s*"),  # sentence end
    re.compile(r"\s+"),  # word break
)
FILL = 5 / 6
"""Least share of its budget a packed part is filled to before a weaker boundary is preferred."""
CHARACTER_CUT = len(_BOUNDARIES)
"""Boundary level of a cut made inside a word."""

# Counting a very long unit only to learn that it is too large wastes time: no
# tokenizer we know packs this many characters into one token on average.
_UNCOUNTED_SPAN_CHARS_PER_TOKEN = 64
_NON_SPACE = re.compile(r"\S")
# Spans counted per batch, so a large text is never sliced whole at once.
_RUNS_PER_BATCH = 256
# Share of the limit a run of merged spans aims at, by the characters-per-token rate
# seen so far; a run that still comes out over the limit is counted span by span.
_MERGE_FILL = 0.15


@dataclass(frozen=True, slots=True)
class Span:
    """A span ``[start, end)`` of the text with its token count.

    ``level`` is the strength of the boundary at ``end`` (0 = paragraph break,
    ``CHARACTER_CUT`` = inside a word).
    """

    start: int
    end: int
    tokens: int
    level: int = 0


CountMany = Callable[[Sequence[str]], list[int]]


def _next_cut(text: str, position: int, end: int, pattern: re.Pattern[str]) -> int:
    """The end of the first boundary found from ``position`` on, or ``end`` if none lies before it."""
    found = pattern.search(text, position, end)
    return end if found is None else found.end()


def _run_end(text: str, start: int, end: int, pattern: re.Pattern[str], target: float) -> tuple[int, bool]:
    """Where a run of spans that begins at ``start`` ends, and whether it holds more than one span.

    The run takes spans up to the first boundary past ``target`` characters, found with
    one search from there: looking at every boundary on the way (every line of a long
    paragraph) cost more than a tenth of a tokenizer pass over the text. A run that
    would overshoot its target twice over ends at the last boundary before the target.
    """
    first = _next_cut(text, start, end, pattern)
    if first >= end or first - start >= target:
        return first, False
    aim = start + int(target)
    last = _next_cut(text, aim, end, pattern)
    if last - start > 2 * target:
        # Searched only up to ``aim``, so every boundary found ends at or before it.
        last = max((m.end() for m in pattern.finditer(text, first, aim)), default=first)
    return last, last > first


def _cut_inside_words(text: str, start: int, end: int, limit: int, count_many: CountMany) -> list[Span]:
    units: list[Span] = []
    position = start
    guess = max(1, limit * 4)
    while position < end:
        size = min(end - position, guess)
        while True:
            tokens = count_many([text[position : position + size]])[0]
            if tokens <= limit or size == 1:
                break
            size = max(1, min(size - 1, int(size * limit / tokens * 0.95)))
        units.append(Span(position, position + size, tokens, CHARACTER_CUT))
        position += size
        # The next unit aims just under the limit at the rate this one showed: keeping
        # the first guess (4 characters a token) left text without spaces in units
        # a sixth short of the limit, and its parts a call in six short.
        guess = max(1, int(size * limit / max(tokens, 1) * 0.95))
    return units


def split_units(text: str, limit: int, count_many: CountMany) -> list[Span]:
    """Cut ``text`` into consecutive units of at most ``limit`` tokens each.

    Args:
        text: The text to cut.
        limit: Most tokens per unit, as counted by ``count_many``.
        count_many: Counts the tokens of several strings at once.

    Returns:
        Units that tile ``text`` exactly, each counted on its own.

    Raises:
        ValueError: If ``limit`` is below 1.
    """
    return split_range(text, 0, len(text), limit, count_many)


def split_range(
    text: str,
    start: int,
    end: int,
    limit: int,
    count_many: CountMany,
    *,
    end_level: int = 0,
    rate: list[int] | None = None,
) -> list[Span]:
    """Cut ``text[start:end]`` into consecutive units of at most ``limit`` tokens each.

    Args:
        text: The whole text (not copied: units are offsets into it).
        start: First character of the range.
        end: End of the range.
        limit: Most tokens per unit, as counted by ``count_many``.
        count_many: Counts the tokens of several strings at once.
        end_level: Strength of the boundary at ``end`` (0 = paragraph break).
        rate: ``[characters, tokens]`` counted so far, updated in place; a caller that
            cuts a text range by range passes the same list, so each range starts with
            the rate the ranges before it measured.

    Returns:
        Units that tile the range exactly, each counted on its own.

    Raises:
        ValueError: If ``limit`` is below 1.
    """
    if limit < 1:
        msg = f"limit must be at least 1 token, got {limit}"
        raise ValueError(msg)
    if start >= end:
        return []
    return _split(text, start, end, 0, limit, count_many, end_level, rate if rate is not None else [0, 0])


def _split(
    text: str,
    start: int,
    end: int,
    level: int,
    limit: int,
    count_many: CountMany,
    end_level: int,
    seen: list[int],
) -> list[Span]:
    """Cut ``text[start:end]`` at ``level`` boundaries; ``seen`` is [characters, tokens] counted so far."""
    if level >= CHARACTER_CUT:
        units = _cut_inside_words(text, start, end, limit, count_many)
        last = units[-1]
        units[-1] = Span(last.start, last.end, last.tokens, end_level)
        return units
    pattern = _BOUNDARIES[level]
    units: list[Span] = []
    position = start
    while position < end:
        # Neighbouring spans (short lines of verse, short paragraphs) are counted as one
        # run, as long as the characters per token seen so far say the run fits: tens
        # of thousands of tiny units would cost more to count and to hold than the text.
        runs: list[tuple[int, int, bool]] = []
        target = limit * seen[0] / seen[1] * _MERGE_FILL if seen[1] else 0
        while position < end and len(runs) < _RUNS_PER_BATCH:
            run_end, several = _run_end(text, position, end, pattern, target)
            runs.append((position, run_end, several))
            position = run_end
        # A span longer than the rate seen so far allows is cut without being counted
        # first: counting it would most likely tokenize its text twice, for nothing.
        most_chars = min(limit * _UNCOUNTED_SPAN_CHARS_PER_TOKEN, limit * seen[0] / seen[1] if seen[1] else math.inf)
        countable = [(a, b) for a, b, _ in runs if b - a <= most_chars]
        counts = dict(zip(countable, count_many([text[a:b] for a, b in countable]), strict=True))
        for a, b, several in runs:
            boundary = level if b < end else end_level
            tokens = counts.get((a, b))
            if tokens is not None:
                seen[0] += b - a
                seen[1] += tokens
            if tokens is not None and tokens <= limit:
                units.append(Span(a, b, tokens, boundary))
            elif several:
                # The run was too dense after all: its spans go one by one.
                units.extend(_split(text, a, b, level, limit, count_many, boundary, [0, 0]))
            else:
                units.extend(_split(text, a, b, level + 1, limit, count_many, boundary, seen))
    return units


def _best_cut(units: Sequence[Span], first: int, last: int, low: int) -> int:
    """Index of the unit to end a part with, among ``units[low..last]``.

    Prefers the strongest boundary, then the latest position (fuller parts).
    """
    best = last
    for index in range(last, max(first, low) - 1, -1):
        if units[index].level < units[best].level:
            best = index
    return best


def pack(units: Sequence[Span], limit: int, fill: float = FILL) -> list[Span]:
    """Pack consecutive units into parts of at most ``limit`` estimated tokens.

    A part is closed at the strongest boundary found in its last sixth, so parts
    end at paragraph breaks where the text allows it without wasting calls.

    Args:
        units: Units from :func:`split_units`, each at most ``limit`` tokens.
        limit: Most tokens per part.
        fill: Least share of ``limit`` a part keeps when it ends at a stronger boundary.

    Returns:
        Parts tiling the same span as ``units``; ``tokens`` is the sum of the units'.
    """
    parts: list[Span] = []
    first = 0
    while first < len(units):
        total = 0
        last = first
        while last < len(units) and total + units[last].tokens <= limit:
            total += units[last].tokens
            last += 1
        last = max(last - 1, first)
        if last < len(units) - 1:
            # Only consider cuts that keep the part at least FILL full: a part ended
            # early at a paragraph break costs calls at every level above it.
            running = 0
            low = last
            for index in range(first, last + 1):
                running += units[index].tokens
                if running >= limit * fill:
                    low = index
                    break
            last = _best_cut(units, first, last, low)
        chosen = units[first : last + 1]
        parts.append(Span(chosen[0].start, chosen[-1].end, sum(u.tokens for u in chosen), chosen[-1].level))
        first = last + 1
    return parts


def boundary_after(text: str, position: int, end: int) -> tuple[int, int]:
    """The first cut at or after ``position`` and before ``end``, at the strongest boundary found.

    Args:
        text: The text.
        position: Where to start looking.
        end: Where to stop looking.

    Returns:
        ``(cut, level)``: the offset right after the separator and its boundary level;
        ``(end, CHARACTER_CUT)`` when the range holds no boundary at all.
    """
    for level, pattern in enumerate(_BOUNDARIES):
        found = pattern.search(text, position, end)
        if found is not None and found.end() < end:
            return found.end(), level
    return end, CHARACTER_CUT


def has_text(text: str, start: int = 0, end: int | None = None) -> bool:
    """Whether ``text[start:end]`` holds anything but whitespace, without copying it."""
    return _NON_SPACE.search(text, start, len(text) if end is None else end) is not None


def drop_blank(text: str, leaves: Sequence[Span]) -> list[Span]:
    """The leaves that hold more than whitespace: the others are not worth a call."""
    return [leaf for leaf in leaves if has_text(text, leaf.start, leaf.end)]


def join_margin(limit: int) -> int:
    """Tokens kept free in a packed part for the seams between its units."""
    return max(min(16, limit // 4), limit // 50)

"""The document's leaves: reading-call-sized parts, planned whole or section by section.

A leaf is what one reading call holds. The whole document is packed flat, once,
the way a map-reduce would read it; the recursion only groups these leaves (see
:func:`group_leaves`, which also shapes the tree), so nested levels neither
tokenize again nor end with half-empty calls.

:func:`stream_leaves` plans section by section and hands each batch of finished
leaves out as soon as it is final, so ``split`` can start reading the first parts
of a long document while it is still tokenizing the rest. Its leaves are the same
as a whole-text packing would make: the units of the last, unfinished leaf of a
section are carried into the next one, and sections end at paragraph breaks
where the text has them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

from rlm_graph.splitter import CountMany, Span, boundary_after, join_margin, pack, split_range
from rlm_graph.steps import Steps, run_steps

__all__ = ["group_leaves", "levels_needed", "plan_leaves", "plan_leaves_in_steps", "plan_with_overlap", "stream_leaves"]

# Leaves in the first section: small, so the first finished leaf comes out after a
# sliver of the document has been tokenized.
_FIRST_SECTION_LEAVES = 2
# Later sections double up to this many tokens: an async run plans on its event loop
# and gives it back after each batch, so a section is one slice of the loop's time
# (about 12 ms on the machine bench/ was measured on).
_MOST_SECTION_TOKENS = 32_768
# Characters per token assumed before any text is counted (English prose is about 4).
_FIRST_CHARS_PER_TOKEN = 4.0


def plan_leaves(text: str, *, part_tokens: int, count_many: CountMany, overlap: int = 0) -> list[Span]:
    """Cut ``text`` into the fewest reading-call-sized parts its boundaries allow.

    Args:
        text: The whole text.
        part_tokens: Most document tokens one reading call may hold.
        count_many: Counts the tokens of several strings at once.
        overlap: Tokens of the previous leaf to repeat at the start of each leaf
            (0 keeps the leaves tiling the text exactly).

    Returns:
        Leaves tiling the text (see :func:`rlm_graph.splitter.drop_blank`); ``tokens``
        is the sum of each leaf's units, which a packing margin keeps within ``part_tokens``.
    """
    return run_steps(plan_leaves_in_steps(text, part_tokens=part_tokens, count_many=count_many, overlap=overlap))


def plan_leaves_in_steps(
    text: str, *, part_tokens: int, count_many: CountMany, overlap: int = 0
) -> Steps[list[Span]]:
    """:func:`plan_leaves` (same arguments and leaves) as steps that pause after each section.

    An async caller runs them on its event loop with :func:`rlm_graph.steps.arun_steps`.
    """
    if overlap:
        return (yield from plan_with_overlap(text, part_tokens=part_tokens, count_many=count_many, overlap=overlap))
    leaves: list[Span] = []
    for batch in stream_leaves(text, part_tokens=part_tokens, count_many=count_many):
        leaves += batch
        yield
    return leaves


def plan_with_overlap(
    text: str, *, part_tokens: int, count_many: CountMany, overlap: int
) -> Steps[list[Span]]:
    """Plan leaves that repeat up to ``overlap`` tokens of their predecessor, pausing after each section.

    Each leaf's start depends on the units before it, so the leaves come all at once,
    at the end; the generator yields (nothing) after each section it has counted, so
    that an async caller can give its event loop back.

    Args:
        text: The whole text.
        part_tokens: Most document tokens one reading call may hold.
        count_many: Counts the tokens of several strings at once.
        overlap: Tokens of the previous leaf to repeat at the start of each leaf.

    Returns:
        The leaves, as :func:`plan_leaves` gives them.
    """
    # With overlap, finer units let each part take close to ``overlap`` tokens of its predecessor.
    units: list[Span] = []
    for section in _unit_sections(text, overlap, part_tokens, count_many):
        units += section
        yield
    if not units:
        return []
    packed = _packed(units, part_tokens - overlap - join_margin(part_tokens))
    return _with_overlap(packed, units, overlap)


def stream_leaves(text: str, *, part_tokens: int, count_many: CountMany) -> Iterator[list[Span]]:
    """Plan the leaves of ``text`` section by section, yielding each batch once it is final.

    The batches, joined, are the plan :func:`plan_leaves` returns (without overlap).

    Args:
        text: The whole text.
        part_tokens: Most document tokens one reading call may hold.
        count_many: Counts the tokens of several strings at once.

    Yields:
        Consecutive leaves, in document order; no batch is empty.
    """
    # Units of at most a quarter part pack without leaving large gaps (a paragraph
    # longer than that is cut at lines or sentences).
    unit_limit = max(1, part_tokens // 4)
    # Packed from unit counts, with a margin for where units meet: joined text
    # tokenizes to the sum of its units give or take a token per seam.
    limit = part_tokens - join_margin(part_tokens)
    pending: list[Span] = []
    for units in _unit_sections(text, unit_limit, part_tokens, count_many):
        pending += units
        if pending[-1].end >= len(text):
            break
        packed = pack(pending, limit)
        # The last leaf may still grow with the next section's units: its units wait.
        carried = packed[-1].start
        if len(packed) > 1:
            yield packed[:-1]
        pending = [unit for unit in pending if unit.start >= carried]
    if pending:
        yield _packed(pending, limit)


def _unit_sections(text: str, unit_limit: int, part_tokens: int, count_many: CountMany) -> Iterator[list[Span]]:
    """The units of ``text`` (at most ``unit_limit`` tokens each), one section at a time."""
    rate = [0, 0]
    start, section_tokens = 0, min(_FIRST_SECTION_LEAVES * part_tokens, _MOST_SECTION_TOKENS)
    while start < len(text):
        chars_per_token = rate[0] / rate[1] if rate[1] else _FIRST_CHARS_PER_TOKEN
        target = start + int(section_tokens * chars_per_token)
        # A section ends at the strongest boundary within a leaf's (or a section's, if shorter)
        # length of its target, so a text without paragraph breaks is not searched to its end
        # for one at every section.
        window = min(len(text), target + int(min(part_tokens, section_tokens) * chars_per_token) + 1)
        end, level = (len(text), 0) if target >= len(text) else boundary_after(text, target, window)
        yield split_range(text, start, end, unit_limit, count_many, end_level=level, rate=rate)
        start = end
        section_tokens = min(section_tokens * 2, _MOST_SECTION_TOKENS)


def _packed(units: Sequence[Span], limit: int) -> list[Span]:
    packed = pack(units, limit)
    if len(packed) > math.ceil(sum(u.tokens for u in units) / limit):
        # Paragraph-friendly cuts cost a call here: pack tighter instead.
        packed = min(packed, pack(units, limit, fill=0.98), key=len)
    return packed


def _with_overlap(parts: list[Span], units: Sequence[Span], overlap: int) -> list[Span]:
    """Start each part after the first up to ``overlap`` tokens earlier, on unit boundaries."""
    unit_index_by_start = {unit.start: index for index, unit in enumerate(units)}
    result = [parts[0]] if parts else []
    for part in parts[1:]:
        index = unit_index_by_start[part.start]
        start, extra = part.start, 0
        while index > 0 and extra + units[index - 1].tokens <= overlap:
            index -= 1
            extra += units[index].tokens
            start = units[index].start
        result.append(Span(start, part.end, part.tokens + extra, part.level))
    return result


def group_leaves(leaves: Sequence[Span], fanout: int) -> list[list[Span]]:
    """Group consecutive leaves into at most ``fanout`` parts of one level.

    Each group holds at most as many leaves as a subtree one level shallower can
    read, and groups are as equal as possible, so sibling subtrees finish together.

    Args:
        leaves: The leaves of this level's text.
        fanout: Most parts per level (at least 2).

    Returns:
        The groups, in order; a group of one leaf is read directly.
    """
    if len(leaves) <= fanout:
        return [[leaf] for leaf in leaves]
    capacity = fanout
    while capacity * fanout < len(leaves):
        capacity *= fanout
    count = math.ceil(len(leaves) / capacity)
    size, extra = divmod(len(leaves), count)
    groups: list[list[Span]] = []
    first = 0
    for index in range(count):
        last = first + size + (1 if index < extra else 0)
        groups.append(list(leaves[first:last]))
        first = last
    return groups


def levels_needed(leaves: int, fanout: int) -> int:
    """Depth of the deepest invocation needed to read ``leaves`` leaves.

    Args:
        leaves: Number of reading-call-sized leaves.
        fanout: Most parts per level.

    Returns:
        0 when one level reads them all, 1 when it needs one nested level, and so on.
    """
    depth = 0
    capacity = fanout
    while capacity < leaves:
        capacity *= fanout
        depth += 1
    return depth

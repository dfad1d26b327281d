import itertools
import random
import time

import pytest

from rlm_graph.leaves import group_leaves, levels_needed, plan_leaves
from rlm_graph.splitter import CHARACTER_CUT, join_margin, pack, split_units
from rlm_graph.tokens import TiktokenCounter
from tests.helpers import plan_parts

COUNTER = TiktokenCounter()


def assert_tiles(text: str, pieces: list) -> None:
    assert pieces[0].start == 0
    assert pieces[-1].end == len(text)
    for left, right in itertools.pairwise(pieces):
        assert left.end == right.start
    assert "".join(text[p.start : p.end] for p in pieces) == text


def test_units_tile_and_fit(frankenstein: str) -> None:
    text = frankenstein[:200_000]
    units = split_units(text, 500, COUNTER.count_many)
    assert_tiles(text, units)
    assert all(u.tokens <= 500 for u in units)
    assert all(COUNTER.count(text[u.start : u.end]) == u.tokens for u in units[:200])


def test_parts_end_at_paragraph_breaks_when_possible(frankenstein: str) -> None:
    text = frankenstein[:300_000]
    plan = plan_parts(text, part_tokens=2000, fanout=100, count_many=COUNTER.count_many)
    assert_tiles(text, plan.parts)
    assert all(plan.fits)
    assert all(p.tokens <= 2000 for p in plan.parts)
    # A part's count is the sum of its units'; joined, the text may count a token or
    # so more at a seam, which the packing margin absorbs.
    assert all(COUNTER.count(text[p.start : p.end]) <= min(p.tokens + join_margin(2000), 2000) for p in plan.parts)
    inner_ends = [p.end for p in plan.parts[:-1]]
    at_paragraph = sum(text[:end].endswith("\n\n") or text[end - 2 : end].strip() == "" for end in inner_ends)
    assert at_paragraph / len(inner_ends) > 0.9


def test_sentence_cut_when_no_paragraphs() -> None:
    sentence = "The quick brown fox jumps over the lazy dog. "
    text = sentence * 2000
    plan = plan_parts(text, part_tokens=300, fanout=200, count_many=COUNTER.count_many)
    assert_tiles(text, plan.parts)
    assert all(text[: p.end].endswith(". ") for p in plan.parts)


def test_huge_word_terminates_and_fits() -> None:
    text = "a" * 5_000_000
    started = time.monotonic()
    units = split_units(text, 4000, COUNTER.count_many)
    assert time.monotonic() - started < 120  # a hang guard, not a speed target
    assert_tiles(text, units)
    assert all(u.tokens <= 4000 for u in units)
    assert all(u.level == CHARACTER_CUT for u in units[:-1])


@pytest.mark.parametrize(
    "text",
    [
        "안녕하세요. 한국어 문장입니다! " * 500,
        "Väinämöinen, vaka vanha, laulaja iän-ikuinen. " * 500,
        "🙂🚀 emoji and <|endoftext|> special strings\r\n\r\n" * 400,
        "".join(chr(random.Random(3).randrange(0, 0x2FFFF)) for _ in range(20_000)).replace("\ud800", "x"),
        "\x00\x01\x02 binary \xff\xfe noise " * 300,
        "שלום עולם. مرحبا بالعالم. " * 400,
    ],
)
def test_hostile_text_tiles_and_fits(text: str) -> None:
    plan = plan_parts(text, part_tokens=256, fanout=1000, count_many=COUNTER.count_many)
    assert_tiles(text, plan.parts)
    for part in plan.parts:
        assert COUNTER.count(text[part.start : part.end]) <= 256


def test_too_long_text_is_grouped_into_balanced_parts(frankenstein: str) -> None:
    plan = plan_parts(frankenstein, part_tokens=1000, fanout=6, count_many=COUNTER.count_many)
    leaves = plan_leaves(frankenstein, part_tokens=1000, count_many=COUNTER.count_many)
    assert 2 <= len(plan.parts) <= 6
    assert not any(plan.fits)
    assert_tiles(frankenstein, plan.parts)
    # The parts hand their leaves down whole: every leaf once, in order.
    assert [leaf for group in plan.leaves for leaf in group] == leaves
    sizes = [len(group) for group in plan.leaves]
    assert max(sizes) - min(sizes) <= 1


def test_leaves_are_as_few_as_the_window_allows(frankenstein: str) -> None:
    leaves = plan_leaves(frankenstein, part_tokens=2000, count_many=COUNTER.count_many)
    total = COUNTER.count(frankenstein)
    assert_tiles(frankenstein, leaves)
    assert all(COUNTER.count(frankenstein[leaf.start : leaf.end]) <= 2000 for leaf in leaves)
    # Within 10% of the floor a flat map-reduce would reach with the same budget (the
    # rest is the price of ending parts at paragraph breaks).
    assert len(leaves) <= 1.1 * total / 2000 + 1


@pytest.mark.parametrize(("leaves", "fanout"), [(1, 6), (6, 6), (7, 6), (36, 6), (37, 6), (145, 6), (1433, 6), (50, 2)])
def test_groups_fit_the_depth_they_need(leaves: int, fanout: int) -> None:
    items = list(range(leaves))

    def depth_of(chunk: list[int]) -> int:
        groups = group_leaves(chunk, fanout)  # type: ignore[arg-type]
        assert len(groups) <= fanout
        assert [x for g in groups for x in g] == chunk
        return max((1 + depth_of(g) if len(g) > 1 else 0) for g in groups)

    assert depth_of(items) == levels_needed(leaves, fanout)


def test_overlap_repeats_the_previous_tail(frankenstein: str) -> None:
    text = frankenstein[:100_000]
    plan = plan_parts(text, part_tokens=1500, fanout=100, count_many=COUNTER.count_many, overlap=200)
    assert all(p.tokens <= 1500 for p in plan.parts)
    overlaps = [
        COUNTER.count(text[right.start : left.end]) for left, right in zip(plan.parts, plan.parts[1:], strict=False)
    ]
    assert all(0 < tokens <= 200 for tokens in overlaps)
    assert sum(overlaps) / len(overlaps) > 100


def test_pack_keeps_boundaries() -> None:
    text = "word " * 1000
    units = split_units(text, 10, COUNTER.count_many)
    assert_tiles(text, pack(units, 100))


def test_levels_needed() -> None:
    assert levels_needed(1, 6) == 0
    assert levels_needed(6, 6) == 0
    assert levels_needed(7, 6) == 1
    assert levels_needed(36, 6) == 1
    assert levels_needed(37, 6) == 2


def test_empty_text_has_no_parts() -> None:
    assert plan_parts("", part_tokens=100, fanout=4, count_many=COUNTER.count_many).parts == []


def test_runs_of_lines_of_any_length_tile_fit_and_are_counted_about_once() -> None:
    # Lines from 4 to 1,200 characters in one paragraph: runs are merged by a target in
    # characters, found with one search past it, so a long line right after the target
    # must not make a run that is counted, found too large, and counted again piece by piece.
    rng = random.Random(7)
    words = ["tide", "harbour", "lantern", "Whitby", "rope", "gull", "keel"]
    sizes = rng.choices([1, 2, 5, 40, 150], weights=[40, 40, 10, 7, 3], k=4000)
    lines = [" ".join(rng.choice(words) for _ in range(size)) for size in sizes]
    text = "\n".join(lines)
    counted: list[int] = []

    def count_many(texts: list[str]) -> list[int]:
        counted.extend(len(t) for t in texts)
        return COUNTER.count_many(texts)

    units = split_units(text, 400, count_many)
    assert_tiles(text, units)
    assert all(u.tokens <= 400 for u in units)
    assert all(COUNTER.count(text[u.start : u.end]) == u.tokens for u in units)
    assert sum(counted) < 1.3 * len(text)
    # Short lines are counted together, not one call's worth of text each.
    assert len(counted) < len(lines) / 3

"""Exact aggregation for ``ask_all``: readers reply per part, code merges.

A per-key tally larger than one window cannot be merged by a model (any map-reduce
synthesis must hold all keys at once); summing and merging in code is exact at any size.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from rlm_graph.tokens import TokenCounter

__all__ = ["AGGREGATE_INSTRUCTIONS", "Output", "merge", "parse_reply", "render"]

Output = Literal["text", "count", "tally", "list"]
OUTPUTS: tuple[str, ...] = ("text", "count", "tally", "list")

AGGREGATE_INSTRUCTIONS: dict[str, str] = {
    "count": "Reply with one integer only: the count for this part alone (0 if there is none). No other words.",
    "tally": (
        "Reply with one line per key, exactly `key: number`, counting only what is in this part. "
        "Reply NONE if nothing in this part counts. No other words."
    ),
    "list": (
        "Reply with one item per line, in the order they appear in this part, each item written the same way "
        "every time. Reply NONE if this part has none. No other words."
    ),
}
"""What each reader is told to reply, by ``output``."""

_INTEGER = re.compile(r"-?\d[\d,_]*")
_TALLY_LINE = re.compile(r"^\s*(?:[-*•]\s*)?[`\"']?(?P<key>.+?)[`\"']?\s*[:=]\s*(?P<value>-?\d[\d,_]*)\s*\.?\s*$")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_NONE = re.compile(r"^\W*none\W*$", re.IGNORECASE)


def _integer(text: str) -> int:
    return int(text.replace(",", "").replace("_", ""))


def parse_reply(output: str, reply: str) -> int | dict[str, int] | list[str]:
    """Parse one reader's reply.

    Args:
        output: ``"count"``, ``"tally"`` or ``"list"``.
        reply: The reply text.

    Returns:
        An integer, a tally or a list of items.

    Raises:
        ValueError: If a count reply holds no integer.
    """
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
    if output == "count":
        if lines and _NONE.match(lines[0]):
            return 0
        found = _INTEGER.search(reply)
        if found is None:
            msg = f"the reader's reply holds no number: {reply[:80]!r}"
            raise ValueError(msg)
        return _integer(found.group(0))
    if len(lines) == 1 and _NONE.match(lines[0]):
        return {} if output == "tally" else []
    if output == "tally":
        tally: dict[str, int] = {}
        for line in lines:
            if (found := _TALLY_LINE.match(line)) is not None:
                key = found.group("key").strip()
                tally[key] = tally.get(key, 0) + _integer(found.group("value"))
        return tally
    return [_BULLET.sub("", line) for line in lines if not _NONE.match(line)]


def merge(output: str, parsed: Sequence[int | dict[str, int] | list[str]]) -> int | dict[str, int] | list[str]:
    """Merge the parsed replies of every part, in document order, exactly.

    Counts are summed, tallies summed per key, lists concatenated without duplicates
    (the first occurrence keeps its place).
    """
    if output == "count":
        return sum(int(value) for value in parsed)  # type: ignore[arg-type]
    if output == "tally":
        total: dict[str, int] = {}
        for tally in parsed:
            for key, value in tally.items():  # type: ignore[union-attr]
                total[key] = total.get(key, 0) + value
        return total
    seen: dict[str, None] = {}
    for items in parsed:
        for item in items:  # type: ignore[union-attr]
            seen.setdefault(item, None)
    return list(seen)


def render(output: str, merged: int | dict[str, int] | list[str], limit: int, counter: TokenCounter) -> str:
    """The merged result as text of at most ``limit`` tokens, saying how many entries were left out.

    A tally is sorted by count (largest first, then by key); a list keeps document order.
    """
    if output == "count":
        return f"total: {merged}"
    if output == "tally":
        entries = sorted(merged.items(), key=lambda item: (-item[1], item[0]))  # type: ignore[union-attr]
        lines = [f"{key}: {value}" for key, value in entries]
        head = f"{len(lines)} distinct keys, {sum(v for _, v in entries)} in all, largest first:"
    else:
        lines = list(merged)  # type: ignore[arg-type]
        head = f"{len(lines)} distinct items, in document order:"
    budget = limit - counter.count(head) - 40
    kept = 0
    for tokens in counter.count_many(lines):
        if budget - tokens - 1 < 0:
            break
        budget -= tokens + 1
        kept += 1
    text = "\n".join([head, *lines[:kept]])
    if kept < len(lines):
        text += f"\n... {len(lines) - kept} more entries left out to fit the window"
    return text

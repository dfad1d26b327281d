"""Exact aggregation for ``ask_all``: readers reply per part, code merges.

A per-key tally larger than one window cannot be merged by a model (any map-reduce
synthesis must hold all keys at once); summing and merging in code is exact at any size.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

from rlm_graph.replies import ReplyForm, Unreadable
from rlm_graph.reply_schemas import COUNT_SCHEMA, LIST_SCHEMA, TALLY_SCHEMA
from rlm_graph.tokens import TokenCounter

__all__ = [
    "AGGREGATE_INSTRUCTIONS",
    "EXPECTED",
    "REPLY_FORMS",
    "STRUCTURED_INSTRUCTIONS",
    "Output",
    "UnparsedReplyError",
    "merge",
    "parse_reply",
    "render",
]

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
"""What each reader is told to reply, by ``output`` (text replies)."""

STRUCTURED_INSTRUCTIONS: dict[str, str] = {
    "count": "Give the count for this part alone as `count` (0 if there is none).",
    "tally": (
        "Give one entry per key in `counts`, each with its `key` and its `count` in this part alone "
        "(an empty list if nothing in this part counts)."
    ),
    "list": (
        "Give the items in `items`, in the order they appear in this part, each written the same way every time "
        "(an empty list if this part has none)."
    ),
}
"""What each reader is told when its reply follows the JSON schema of :data:`REPLY_FORMS`."""

# What a reply may wrap its value in (Markdown emphasis, code, quotes): formatting, not content.
_WRAP = "`*\"'"
_INTEGER = re.compile(rf"^[{_WRAP}\s]*(?P<value>\d{{1,3}}(?:,\d{{3}})+|\d+)[{_WRAP}\s]*\.?[{_WRAP}\s]*$")
_TALLY_LINE = re.compile(
    rf"^(?:[-*•]\s+)?[{_WRAP}]*(?P<key>.*?\S)[{_WRAP}]*\s*:\s*[{_WRAP}]*(?P<value>\d{{1,3}}(?:,\d{{3}})+|\d+)"
    rf"[{_WRAP}]*\.?$"
)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_NONE = re.compile(r"^\W*none\W*$", re.IGNORECASE)
_FENCE = re.compile(r"^```\w*$")

EXPECTED: dict[str, str] = {
    "count": "one integer and nothing else, such as 12 (or 0)",
    "tally": "one `key: number` line per key, such as `apple: 3`, and nothing else (or NONE)",
    "list": "one item per line and nothing else (or NONE)",
}
"""The form each reply must take, as the corrective message and the errors name it."""


class UnparsedReplyError(ValueError):
    """A reader's reply is not in the form its ``output`` asks for; nothing of it is counted."""

    def __init__(self, output: str, problem: str) -> None:
        self.output = output
        self.problem = problem
        super().__init__(f"{problem}; expected {EXPECTED[output]}")


def _integer(text: str) -> int:
    return int(text.replace(",", ""))


def _lines(reply: str) -> list[str]:
    # Code fences around the whole reply are formatting, as are blank lines.
    return [line.strip() for line in reply.strip().splitlines() if line.strip() and not _FENCE.match(line.strip())]


def parse_reply(output: str, reply: str) -> int | dict[str, int] | list[str]:
    """Read one reader's reply strictly: what it says in the asked form, or an error, never a guess.

    A count is one integer (``"Chapter 12 has 5."`` holds two numbers and is not read as
    either); a tally is ``key: number`` lines only (a line such as ``"K0001: 3 times"``
    makes the whole reply unreadable, since dropping it would undercount); a list is one
    item per line, and a line that ends with a colon introduces items rather than being one; ``NONE`` is
    zero, an empty tally or an empty list. Markdown emphasis, code marks, quotes,
    bullets and a final period around a value are formatting and are ignored.

    Args:
        output: ``"count"``, ``"tally"`` or ``"list"``.
        reply: The reply text.

    Returns:
        An integer, a tally or a list of items.

    Raises:
        UnparsedReplyError: If the reply is not in that form (its message says what was wrong and the form).
    """
    lines = _lines(reply)
    if not lines:
        raise UnparsedReplyError(output, "the reply is empty")
    if len(lines) == 1 and _NONE.match(lines[0]):
        return 0 if output == "count" else {} if output == "tally" else []
    if output == "count":
        found = _INTEGER.match(lines[0]) if len(lines) == 1 else None
        if found is None:
            raise UnparsedReplyError(output, f"the reply is not one integer: {reply.strip()[:80]!r}")
        return _integer(found.group("value"))
    if output == "tally":
        tally: dict[str, int] = {}
        for line in lines:
            found = _TALLY_LINE.match(line)
            if found is None:
                raise UnparsedReplyError(output, f"the line {line[:80]!r} is not `key: number`")
            key = found.group("key").strip()
            tally[key] = tally.get(key, 0) + _integer(found.group("value"))
        return tally
    items = [_BULLET.sub("", line) for line in lines if not _NONE.match(line)]
    if (intro := next((item for item in items if item.endswith(":")), None)) is not None:
        # "Here are the items I found:" introduces the items; it is not one of them.
        raise UnparsedReplyError(output, f"the line {intro[:80]!r} introduces the items instead of being one")
    return items


def _read_text(output: str) -> Callable[[str], int | dict[str, int] | list[str] | Unreadable]:
    def read(text: str) -> int | dict[str, int] | list[str] | Unreadable:
        try:
            return parse_reply(output, text)
        except UnparsedReplyError as error:
            return Unreadable(error.problem)

    return read


def _count_json(data: dict[str, Any]) -> int | Unreadable:
    count = data["count"]
    return count if count >= 0 else Unreadable(f"the count {count} is negative")


def _tally_json(data: dict[str, Any]) -> dict[str, int] | Unreadable:
    tally: dict[str, int] = {}
    for entry in data["counts"]:
        key, count = entry["key"].strip(), entry["count"]
        if not key or count < 0:
            return Unreadable(f"the entry {entry!r} has an empty key or a negative count")
        tally[key] = tally.get(key, 0) + count
    return tally


def _list_json(data: dict[str, Any]) -> list[str]:
    return [item.strip() for item in data["items"] if item.strip()]


REPLY_FORMS: dict[str, ReplyForm[Any]] = {
    "count": ReplyForm(
        "count", _read_text("count"), EXPECTED["count"], COUNT_SCHEMA, _count_json
    ),
    "tally": ReplyForm(
        "tally",
        _read_text("tally"),
        EXPECTED["tally"],
        TALLY_SCHEMA,
        _tally_json,
    ),
    "list": ReplyForm(
        "list",
        _read_text("list"),
        EXPECTED["list"],
        LIST_SCHEMA,
        _list_json,
    ),
}
"""How an ``ask_all`` reader's reply is read, by ``output``: strictly as text (:func:`parse_reply`), or as
the JSON object of its schema (``{"count": int}``, ``{"counts": [{"key": str, "count": int}]}``,
``{"items": [str]}``) when the run's replies are structured (:mod:`rlm_graph.replies`)."""


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

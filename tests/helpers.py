"""Helpers shared by the graph tests."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from rlm_graph.leaves import group_leaves, plan_leaves
from rlm_graph.splitter import CountMany, Span


async def collect(graph: CompiledStateGraph, payload: dict[str, Any], **kwargs: Any) -> tuple[dict, list[dict]]:
    """Run with custom + values streams through all nested levels; return output and events."""
    events: list[dict] = []
    final: dict[str, Any] = {}
    async for namespace, mode, chunk in graph.astream(
        payload, stream_mode=["custom", "values"], subgraphs=True, **kwargs
    ):
        if mode == "custom":
            events.append(chunk)
        elif namespace == ():
            final = chunk
    return final, events


def covered(position: int, citations: list[dict[str, int]]) -> bool:
    return any(c["start"] <= position < c["end"] for c in citations)


@dataclass(frozen=True, slots=True)
class Plan:
    """How one level of the recursion divides its text."""

    parts: list[Span]
    fits: list[bool]
    """Per part: whether it is one leaf, read with one call."""
    leaves: list[list[Span]]
    """Per part: the leaves it holds (the part itself when it fits)."""


def plan_parts(text: str, *, part_tokens: int, fanout: int, count_many: CountMany, overlap: int = 0) -> Plan:
    """Divide one level's text into at most ``fanout`` parts.

    The text is cut into leaves (:func:`plan_leaves`) and the leaves are grouped
    (:func:`group_leaves`): a part of one leaf fits one reading call, a larger
    part is handed, with its leaves, to a nested invocation.

    Args:
        text: The text of this level.
        part_tokens: Most document tokens one reading call may hold.
        fanout: Most parts at this level (at least 2).
        count_many: Counts the tokens of several strings at once.
        overlap: Tokens of the previous part to repeat at the start of each
            directly read part (0 keeps parts tiling the text exactly).

    Returns:
        The plan.
    """
    leaves = plan_leaves(text, part_tokens=part_tokens, count_many=count_many, overlap=overlap)
    return plan_groups(group_leaves(leaves, fanout))


def plan_groups(groups: Sequence[Sequence[Span]]) -> Plan:
    """The plan of one level whose leaves are already grouped."""
    parts = [Span(g[0].start, g[-1].end, sum(leaf.tokens for leaf in g), g[-1].level) for g in groups]
    return Plan(parts, [len(g) == 1 for g in groups], [list(g) for g in groups])


class LoopTurns:
    """Counts the turns of the running event loop while open (``async with``): a coroutine
    that does nothing but give the loop back, as another user's stream would."""

    def __init__(self) -> None:
        self.now = 0
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopTurns:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._done.set()
        if self._task is not None:
            await self._task

    async def _watch(self) -> None:
        while not self._done.is_set():
            self.now += 1
            await asyncio.sleep(0)

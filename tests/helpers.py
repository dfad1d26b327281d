"""Helpers shared by the graph tests."""

from __future__ import annotations

from typing import Any

from langgraph.graph.state import CompiledStateGraph


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

"""What a run will cost, before it spends anything."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from langgraph.graph.state import CompiledStateGraph
from typing_extensions import TypedDict

from rlm_graph.leaves import group_leaves, plan_leaves
from rlm_graph.options import check_part_tokens
from rlm_graph.prompts import neutralize_tags
from rlm_graph.settings import Settings
from rlm_graph.splitter import Span, drop_blank, has_text
from rlm_graph.window import SEAM_SLACK

_settings_by_graph: weakref.WeakKeyDictionary[Any, Settings] = weakref.WeakKeyDictionary()


class CostEstimate(TypedDict):
    """Planned cost of answering one question about one document.

    Reading calls are exact (the plan is the one the run will follow); synthesis is
    counted as if every part had something to say at full ``max_output_tokens``, so
    ``llm_calls`` and ``input_tokens`` are upper bounds for well-behaved models.
    """

    llm_calls: int
    input_tokens: int
    reads: int
    """Calls that read a part of the document (or the whole of it)."""
    max_depth: int


def register(graph: CompiledStateGraph, settings: Settings) -> None:
    """Remember the settings a graph was built with, for :func:`estimate_cost`."""
    _settings_by_graph[graph] = settings


def settings_of(graph: CompiledStateGraph) -> Settings:
    """The settings of a graph built by ``create_rlm_graph``.

    Args:
        graph: The compiled graph.

    Returns:
        Its settings.

    Raises:
        TypeError: If the graph was not built by ``create_rlm_graph``.
    """
    try:
        return _settings_by_graph[graph]
    except (KeyError, TypeError):
        msg = "estimate_cost needs a graph built by rlm_graph.create_rlm_graph"
        raise TypeError(msg) from None


def _add(total: CostEstimate, other: CostEstimate) -> None:
    total["llm_calls"] += other["llm_calls"]
    total["input_tokens"] += other["input_tokens"]
    total["reads"] += other["reads"]
    total["max_depth"] = max(total["max_depth"], other["max_depth"])


def synthesis_cost(settings: Settings, question: str, findings: int) -> int:
    """Upper bound on the prompt tokens of one synthesis over ``findings`` findings."""
    block = settings.finding_block_tokens([""])[0] + settings.max_output_tokens
    return settings.synthesis_overhead(question) + findings * block + SEAM_SLACK


def part_cost(settings: Settings, question: str, leaves: Sequence[Span], fanout: int, depth: int) -> CostEstimate:
    """Cost of one planned part: one read, or a nested invocation over its leaves.

    Args:
        settings: The graph's settings.
        question: The question.
        leaves: The part's leaves (one for a part read directly).
        fanout: Most parts per level.
        depth: Depth of the level the part belongs to.

    Returns:
        The part's cost.
    """
    if len(leaves) == 1:
        tokens = settings.read_overhead(question) + leaves[0].tokens + SEAM_SLACK
        return {"llm_calls": 1, "input_tokens": tokens, "reads": 1, "max_depth": depth}
    return level_cost(settings, question, leaves, fanout, depth + 1)


def level_cost(settings: Settings, question: str, leaves: Sequence[Span], fanout: int, depth: int = 0) -> CostEstimate:
    """Cost of one invocation that reads ``leaves``, nested invocations included.

    Args:
        settings: The graph's settings.
        question: The question.
        leaves: The invocation's leaves.
        fanout: Most parts per level.
        depth: Depth of the invocation.

    Returns:
        The estimate.
    """
    total: CostEstimate = {"llm_calls": 0, "input_tokens": 0, "reads": 0, "max_depth": depth}
    groups = group_leaves(leaves, fanout)
    for group in groups:
        _add(total, part_cost(settings, question, group, fanout, depth))
    if depth == 0 or len(groups) > 1:
        total["llm_calls"] += 1
        total["input_tokens"] += synthesis_cost(settings, question, len(groups))
    return total


def text_cost(settings: Settings, text: str, question: str, part_tokens: int | None = None) -> CostEstimate:
    """Cost of a run on ``text``, nested invocations included.

    Args:
        settings: The graph's settings.
        text: The document.
        question: The question.
        part_tokens: The run's part limit; ``None``: the graph's.

    Returns:
        The estimate.
    """
    if not has_text(text):
        return {"llm_calls": 0, "input_tokens": 0, "reads": 0, "max_depth": 0}
    safe = neutralize_tags(text)
    # The same decision as the check node.
    if settings.fits_one_call(safe, question, (0, len(text)), settings.counter.count_many, part_tokens):
        tokens = settings.counter.count_messages(settings.one_call_messages(safe, question, 0, (0, len(text))))
        return {"llm_calls": 1, "input_tokens": tokens, "reads": 1, "max_depth": 0}
    budget = settings.budget_for(question, part_tokens)
    leaves = plan_leaves(
        safe, part_tokens=budget["part_tokens"], count_many=settings.counter.count_many, overlap=settings.chunk_overlap
    )
    leaves = drop_blank(safe, leaves)
    return level_cost(settings, question, leaves, budget["fanout"], 0)


def estimate_cost(
    graph: CompiledStateGraph, document: str, question: str, *, part_tokens: int | None = None
) -> CostEstimate:
    """Plan a run without calling the model, so a chat service can show "about N calls".

    The document is tokenized and split exactly as a full read would do it. Focused
    reading (which plans smaller parts and reads only some) and the navigator (which
    chooses its own reads) follow other plans, which this does not estimate.

    Args:
        graph: A graph built by ``create_rlm_graph``.
        document: The document.
        question: The question.
        part_tokens: The run's ``RLMContext.part_tokens``, if it sets one; ``None``:
            the graph's.

    Returns:
        Planned model calls and input tokens (upper bounds, see ``CostEstimate``),
        reading calls, and the deepest nesting level.

    Raises:
        TypeError: If ``graph`` was not built by ``create_rlm_graph`` or an
            input is not a string.
        ValueError: If ``part_tokens`` is out of range.
    """
    settings = settings_of(graph)
    for name, value in (("document", document), ("question", question)):
        if not isinstance(value, str):
            msg = f"{name!r} must be a str, got {type(value).__name__}"
            raise TypeError(msg)
    if part_tokens is not None:
        check_part_tokens(part_tokens)
    return text_cost(settings, document, question, part_tokens)


def part_limit(graph: CompiledStateGraph, question: str, *, part_tokens: int | None = None) -> int:
    """Most document tokens one reading call of ``graph`` holds for ``question``.

    It is ``part_tokens`` (the graph's, or the run's), or less when the model's
    window leaves less room beside the prompt, the question and the reply, so a
    caller can say that a requested part size was capped.

    Args:
        graph: A graph built by ``create_rlm_graph``.
        question: The question.
        part_tokens: The run's ``RLMContext.part_tokens``, if it sets one; ``None``: the graph's.

    Returns:
        Tokens of document text per reading call.

    Raises:
        TypeError: If ``graph`` was not built by ``create_rlm_graph``.
        ValueError: If the question leaves no room for document text.
    """
    return settings_of(graph).budget_for(question, part_tokens)["part_tokens"]

"""``split``: divide the text into at most ``fanout`` parts and send each to ``process_chunk``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from langchain_core.runnables import Runnable
from langgraph.types import Command
from rlm_graph.nodes.entry import PlanSteps, planning_runnable
from rlm_graph.nodes.sends import held_text, hold_text, leaf_read_call, part_sends
from rlm_graph.state import RLMState

from rlm_graph import focus, read_ahead
from rlm_graph.errors import BudgetExceededError, DepthLimitError
from rlm_graph.estimate import level_cost, part_cost
from rlm_graph.leaves import group_leaves, levels_needed, plan_with_overlap, stream_leaves
from rlm_graph.level import Level
from rlm_graph.progress import ProgressWriter
from rlm_graph.read_ahead import StartReads
from rlm_graph.replies import reply_format
from rlm_graph.runs import RunResources
from rlm_graph.settings import Settings
from rlm_graph.splitter import CountMany, Span, drop_blank

# Reading ahead goes on while the plan, extrapolated and grown by this much, fits max_depth.
_READ_AHEAD_MARGIN = 1.5


def _within_budget(
    settings: Settings, run: Level, question: str, leaves: list[Span], fanout: int
) -> tuple[list[Span], list[dict[str, Any]]]:
    """Check the whole plan against the run's budgets before any call is made.

    Returns the leaves to read and, with ``on_budget="partial"``, the skipped spans.
    """
    limits = run.resources

    def affordable(count: int) -> bool:
        cost = level_cost(settings, question, leaves[:count], fanout)
        return (limits.max_llm_calls is None or cost["llm_calls"] <= limits.max_llm_calls) and (
            limits.max_input_tokens is None or cost["input_tokens"] <= limits.max_input_tokens
        )

    if affordable(len(leaves)):
        _reserve(settings, run, question, leaves, fanout)
        return leaves, []
    budget = f"max_llm_calls={limits.max_llm_calls}, max_input_tokens={limits.max_input_tokens}"
    if run.on_budget != "partial":
        cost = level_cost(settings, question, leaves, fanout)
        msg = (
            f"this document needs about {cost['llm_calls']} model calls and {cost['input_tokens']} input "
            f"tokens, over the budget ({budget}); raise the budget, or pass on_budget='partial' to answer "
            "from what fits"
        )
        raise BudgetExceededError(msg, **_overrun(limits, cost["llm_calls"], cost["input_tokens"]))
    # Cost grows with the number of leaves read, so the longest affordable prefix is
    # found by bisection: the document is read from its start as far as the budget goes.
    low, high = 0, len(leaves)
    while low < high:
        middle = (low + high + 1) // 2
        if affordable(middle):
            low = middle
        else:
            high = middle - 1
    if low == 0:
        msg = f"the budget ({budget}) does not cover reading even the first part of the document"
        cost = level_cost(settings, question, leaves[:1], fanout)
        raise BudgetExceededError(msg, **_overrun(limits, cost["llm_calls"], cost["input_tokens"]))
    skipped = [
        {
            "start": group[0].start,
            "end": group[-1].end,
            "error": f"skipped to stay within the budget ({budget}): reading it needs about {len(group)} calls",
            "kind": "skipped",
        }
        for group in group_leaves(leaves[low:], fanout)
    ]
    _reserve(settings, run, question, leaves[:low], fanout)
    return leaves[:low], skipped


def _overrun(limits: RunResources, calls: int, tokens: int) -> dict[str, Any]:
    """The budget a plan of ``calls`` calls and ``tokens`` input tokens exceeds, for ``BudgetExceededError``."""
    if limits.max_llm_calls is not None and calls > limits.max_llm_calls:
        return {"budget": "max_llm_calls", "needed": calls, "limit": limits.max_llm_calls}
    return {"budget": "max_input_tokens", "needed": tokens, "limit": limits.max_input_tokens}


def _reserve(settings: Settings, run: Level, question: str, leaves: list[Span], fanout: int) -> None:
    """Book the plan in the run's ledger: its syntheses stay reserved, escalations spend what it leaves."""
    cost = level_cost(settings, question, leaves, fanout)
    # Every leaf is read exactly once, at whatever depth; the rest of the plan is synthesis.
    read_tokens = sum(part_cost(settings, question, [leaf], fanout, 0)["input_tokens"] for leaf in leaves)
    run.resources.reserve(
        cost["llm_calls"], cost["input_tokens"], cost["llm_calls"] - cost["reads"], cost["input_tokens"] - read_tokens
    )


def _leaves(
    settings: Settings,
    run: Level,
    state: RLMState,
    part_tokens: int,
    fanout: int,
    start_reads: StartReads | None,
    progress: ProgressWriter,
) -> PlanSteps:
    """The leaves of this level: handed down by the parent, or planned here at depth 0.

    Planning goes section by section and pauses after each (see
    :func:`rlm_graph.nodes.entry.planning_runnable`). With ``start_reads``, each
    section's leaves start being read as soon as they are final (:mod:`rlm_graph.read_ahead`).
    """
    if (leaves := run.leaves) is not None:
        return leaves
    budget = state["budget"]
    # Planned and sent as the model will see it; same length, so offsets hold.
    document = hold_text(run, state["document"])
    count_many = run.resources.memo_count(settings.counter.count_many)
    if settings.chunk_overlap:
        planned = yield from plan_with_overlap(
            document, part_tokens=part_tokens, count_many=count_many, overlap=settings.chunk_overlap
        )
        leaves = drop_blank(document, planned)
    else:
        question = state["question"]
        leaves = yield from _plan_in_sections(
            settings, run, question, document, part_tokens, fanout, start_reads, progress, count_many
        )
    # The plan is final: nested levels group these leaves and never count again.
    run.resources.forget_counts()
    # Refuse up front, before any spending, when the tree cannot fit max_depth.
    needed = levels_needed(len(leaves), budget["fanout"])
    if needed > run.max_depth:
        msg = (
            f"the document needs {needed} nested {'level' if needed == 1 else 'levels'} with this model's window "
            f"(about {budget['part_tokens']} document tokens per call, {budget['fanout']} parts "
            f"per level) but max_depth is {run.max_depth}; raise max_depth or use a model "
            "with a larger context window"
        )
        raise DepthLimitError(msg, levels=needed, max_depth=run.max_depth)
    return leaves


def _plan_in_sections(
    settings: Settings,
    run: Level,
    question: str,
    document: str,
    part_tokens: int,
    fanout: int,
    start_reads: StartReads | None,
    progress: ProgressWriter,
    count_many: CountMany,
) -> PlanSteps:
    """Plan section by section, pausing after each, and start reading finished leaves if asked.

    The last section is not read ahead: planning is over by then, and its parts'
    own reads follow at once. Reading ahead stops for good once the plan so far
    suggests the tree would not fit ``max_depth``: the exact check then refuses the
    run, and what was started is cancelled with it.
    """
    leaves: list[Span] = []
    reading = start_reads is not None
    for batch in stream_leaves(document, part_tokens=part_tokens, count_many=count_many):
        ready = drop_blank(document, batch)
        leaves += ready
        if ready and batch[-1].end < len(document):
            planned = leaves[-1].end
            reading = reading and _may_fit(run, len(leaves), planned, len(document), fanout)
            if reading and start_reads is not None:
                # Made as process_chunk's first call will be, in the run's reply format, so that it is taken.
                structured = reply_format(run) == "structured"
                start_reads(
                    [
                        leaf_read_call(settings, run, question, leaf, _ahead_name(leaf), structured=structured)
                        for leaf in ready
                    ]
                )
                progress.progress(
                    "split",
                    "processing",
                    "split.reading_ahead",
                    done=planned,
                    total=len(document),
                    span=(0, planned),
                    parts=len(leaves),
                )
        yield
    return leaves


def _ahead_name(leaf: Span) -> str:
    return f"read ahead {leaf.start}-{leaf.end}"


def _may_fit(run: Level, planned: int, planned_chars: int, chars: int, fanout: int) -> bool:
    """Whether the whole plan, extrapolated (with room to spare) from its planned share, fits ``max_depth``."""
    expected = math.ceil(planned * chars / max(planned_chars, 1) * _READ_AHEAD_MARGIN)
    return levels_needed(expected, fanout) <= run.max_depth


def _reads_ahead(settings: Settings, run: Level, mode: str) -> bool:
    """Whether ``split`` may read while it plans: never when a budget must see the whole plan first."""
    limits = run.resources
    return (
        settings.read_ahead
        and run.depth == 0
        and run.leaf_rows is None  # the top level: nested levels are handed their leaves
        and mode == "full"
        and not settings.chunk_overlap
        and limits.max_llm_calls is None
        and limits.max_input_tokens is None
    )


def make_split(settings: Settings) -> Runnable[RLMState, Command]:
    """Build the ``split`` node (sync and async).

    Args:
        settings: The graph's settings.

    Returns:
        The node runnable.
    """

    def split(state: RLMState, start_reads_for: Callable[[Level], StartReads]) -> PlanSteps:
        run = Level.current(settings, state["run_key"])
        scope = (run.offset, run.offset + state["chars"])
        progress = run.writer(scope)
        progress.progress("split", "started", "split.started")
        question = state["question"]
        mode = focus.mode_for(settings, run, question, progress)
        fanout = focus.plan_fanout(mode, state["budget"]["fanout"])
        part_tokens = focus.plan_part_tokens(settings, mode, state["budget"]["part_tokens"])
        start_reads = start_reads_for(run) if _reads_ahead(settings, run, mode) else None
        leaves = yield from _leaves(settings, run, state, part_tokens, state["budget"]["fanout"], start_reads, progress)
        skipped: list[dict[str, Any]] = []
        if run.depth == 0 and (run.resources.max_llm_calls or run.resources.max_input_tokens):
            leaves, skipped = _within_budget(settings, run, question, leaves, fanout)
        for error in skipped:
            progress.progress(
                "split", "failed", "split.skipped", span=(error["start"], error["end"]), error=error["error"]
            )
        groups = group_leaves(leaves, fanout)
        parts = [
            {"start": g[0].start, "end": g[-1].end, "tokens": sum(leaf.tokens for leaf in g), "fits": len(g) == 1}
            for g in groups
        ]
        progress.progress("split", "done", "split.done", total=len(parts), done=len(parts))
        groups_by_start = {group[0].start: group for group in groups}
        document = held_text(run, state["document"])
        parts, extra = yield from focus.first_round(settings, run, state, document, parts, mode, progress)
        if run.depth == 0:
            run.resources.plan_leaves(sum(len(groups_by_start[part["start"]]) for part in parts))
        sends = part_sends(
            run,
            question,
            state["document"],
            [(part, groups_by_start[part["start"]]) for part in parts],
            first_index=1,
            total=len(parts),
            scope=scope,
        )
        # The parts now travel in the Send payloads; dropping the text from state keeps
        # every later checkpoint of this level from serialising the document again.
        update = {"parts": parts, "document": "", "errors": skipped, **extra}
        return Command(update=update, goto=sends or "synthesize")

    def split_sync(state: RLMState) -> PlanSteps:
        return split(state, read_ahead.in_threads)

    def split_async(state: RLMState) -> PlanSteps:
        return split(state, read_ahead.in_tasks)

    return planning_runnable("split", split_sync, split_async)

"""``split``: divide the text into at most ``fanout`` parts and send each to ``process_chunk``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.types import Command, Send
from rlm_graph.state import ChunkTask, RLMState

from rlm_graph import focus, relay
from rlm_graph.errors import BudgetExceededError, DepthLimitError
from rlm_graph.estimate import part_cost, synthesis_cost
from rlm_graph.prompts import neutralize_tags
from rlm_graph.settings import Invocation, Settings
from rlm_graph.splitter import Piece, levels_needed, plan_parts


def _task(
    state: RLMState,
    document: str,
    run: Invocation,
    part: dict[str, Any],
    index: int,
    total: int,
    scope: tuple[int, int],
) -> ChunkTask:
    return {
        "question": state["question"],
        "text": document[part["start"] - run.offset : part["end"] - run.offset],
        "start": part["start"],
        "end": part["end"],
        "tokens": part["tokens"],
        "fits": part["fits"],
        "index": index,
        "total": total,
        "depth": run.depth,
        "scope": [scope[0], scope[1]],
        "run_key": run.run_key,
    }


def _within_budget(
    settings: Settings, run: Invocation, document: str, question: str, planned: list[tuple[Piece, bool]]
) -> tuple[list[tuple[Piece, bool]], list[dict[str, Any]]]:
    """Check the whole plan against the run's budgets before any call is made.

    Returns the parts to read and, with ``on_budget="partial"``, the skipped spans.
    """
    limits = run.resources
    costs = [part_cost(settings, document, question, part, fits, 0) for part, fits in planned]
    synthesis = synthesis_cost(settings, question, len(planned))
    calls = sum(c["llm_calls"] for c in costs) + 1
    tokens = sum(c["input_tokens"] for c in costs) + synthesis
    over_calls = limits.max_llm_calls is not None and calls > limits.max_llm_calls
    over_tokens = limits.max_input_tokens is not None and tokens > limits.max_input_tokens
    relay.reserve_plan(limits, calls, tokens)
    if not (over_calls or over_tokens):
        return planned, []
    budget = f"max_llm_calls={limits.max_llm_calls}, max_input_tokens={limits.max_input_tokens}"
    if run.on_budget != "partial":
        msg = (
            f"this document needs about {calls} model calls and {tokens} input tokens, over the budget "
            f"({budget}); raise the budget, or pass on_budget='partial' to answer from what fits"
        )
        raise BudgetExceededError(msg)
    calls_left = (limits.max_llm_calls or calls) - 1
    tokens_left = (limits.max_input_tokens or tokens) - synthesis
    kept: list[tuple[Piece, bool]] = []
    skipped: list[dict[str, Any]] = []
    for (part, fits), cost in zip(planned, costs, strict=True):
        if not skipped and cost["llm_calls"] <= calls_left and cost["input_tokens"] <= tokens_left:
            kept.append((part, fits))
            calls_left -= cost["llm_calls"]
            tokens_left -= cost["input_tokens"]
            continue
        reason = f"skipped to stay within the budget ({budget}): reading it needs about {cost['llm_calls']} calls"
        skipped.append({"start": run.offset + part.start, "end": run.offset + part.end, "error": reason})
    if not kept:
        msg = f"the budget ({budget}) does not cover reading even the first part of the document"
        raise BudgetExceededError(msg)
    return kept, skipped


def make_split(settings: Settings) -> Callable[[RLMState], Command]:
    """Build the ``split`` node.

    Args:
        settings: The graph's settings.

    Returns:
        The node function.
    """

    def split(state: RLMState) -> Command:
        # Planned and sent as the model will see it; same length, so offsets hold.
        document = neutralize_tags(state["document"])
        budget = state["budget"]
        run = Invocation.current(settings, state["run_key"])
        scope = (run.offset, run.offset + len(document))
        progress = run.writer(scope)
        progress.progress("split", "started", "split.started")
        mode = focus.mode_for(settings, run, state["question"], progress)
        plan = plan_parts(
            document,
            part_tokens=focus.plan_part_tokens(settings, mode, budget["part_tokens"]),
            fanout=focus.plan_fanout(mode, budget["fanout"]),
            overlap=settings.chunk_overlap,
            count_many=run.resources.memo_count(settings.counter.count_many),
        )
        if run.depth == 0:
            # Refuse up front, before any spending, when the tree cannot fit max_depth.
            needed = levels_needed(
                sum(p.tokens for p in plan.parts), part_tokens=budget["part_tokens"], fanout=budget["fanout"]
            )
            if needed > run.max_depth:
                msg = (
                    f"the document needs {needed} nested levels with this model's window "
                    f"(about {budget['part_tokens']} document tokens per call, {budget['fanout']} parts "
                    f"per level) but max_depth is {run.max_depth}; raise max_depth or use a model "
                    "with a larger context window"
                )
                raise DepthLimitError(msg)
        planned = [
            (p, fits) for p, fits in zip(plan.parts, plan.fits, strict=True) if document[p.start : p.end].strip()
        ]
        skipped: list[dict[str, Any]] = []
        if run.depth == 0 and (run.resources.max_llm_calls or run.resources.max_input_tokens):
            planned, skipped = _within_budget(settings, run, document, state["question"], planned)
            for error in skipped:
                progress.progress(
                    "split", "failed", "split.skipped", span=(error["start"], error["end"]), error=error["error"]
                )
        parts = [
            {"start": run.offset + p.start, "end": run.offset + p.end, "tokens": p.tokens, "fits": fits}
            for p, fits in planned
        ]
        progress.progress("split", "done", "split.done", total=len(parts), done=len(parts))
        parts, extra = focus.first_round(settings, run, state, document, parts, mode, progress)
        sends = [
            Send("process_chunk", _task(state, document, run, part, index, len(parts), scope))
            for index, part in enumerate(parts, start=1)
        ]
        # The parts now travel in the Send payloads; dropping the text from state keeps
        # every later checkpoint of this level from serialising the document again.
        update = {"parts": parts, "document": "", "errors": skipped, **extra}
        return Command(update=update, goto=sends or "synthesize")

    return split

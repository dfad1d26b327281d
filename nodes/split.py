"""``split``: divide the text into at most ``fanout`` parts and send each to ``process_chunk``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.types import Command, Send
from rlm_graph.state import ChunkTask, RLMState

from rlm_graph.errors import DepthLimitError
from rlm_graph.prompts import neutralize_tags
from rlm_graph.settings import Invocation, Settings
from rlm_graph.splitter import levels_needed, plan_parts


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
        plan = plan_parts(
            document,
            part_tokens=budget["part_tokens"],
            fanout=budget["fanout"],
            overlap=settings.chunk_overlap,
            count_many=settings.counter.count_many,
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
        parts = [
            {"start": run.offset + p.start, "end": run.offset + p.end, "tokens": p.tokens, "fits": fits}
            for p, fits in zip(plan.parts, plan.fits, strict=True)
            if document[p.start : p.end].strip()
        ]
        progress.progress("split", "done", "split.done", total=len(parts), done=len(parts))
        sends = [
            Send("process_chunk", _task(state, document, run, part, index, len(parts), scope))
            for index, part in enumerate(parts, start=1)
        ]
        # The parts now travel in the Send payloads; dropping the text from state keeps
        # every later checkpoint of this level from serialising the document again.
        return Command(update={"parts": parts, "document": ""}, goto=sends or "synthesize")

    return split

"""``check``: validate the input and decide between one call and splitting."""

from __future__ import annotations

import functools
import uuid
from typing import Any

from langchain_core.runnables import Runnable
from langgraph.config import get_config
from langgraph.graph import END
from rlm_graph.nodes.entry import PlanSteps, inline_runnable, planning_runnable
from rlm_graph.state import RLMState, reset, zero_usage

from rlm_graph.level import CONFIG_RUN_KEY, Level
from rlm_graph.options import wants_navigate
from rlm_graph.prompts import neutralize_tags
from rlm_graph.settings import Settings
from rlm_graph.splitter import has_text

# Counting more text than this (about 25 ms of tokenizing here) in ``check`` is done
# off an async run's event loop; it happens when a large ``part_tokens`` lets a long
# document fit one call.
_INLINE_COUNT_CHARS = 256_000


def _validate(state: RLMState) -> tuple[str, str]:
    values: dict[str, Any] = {}
    for name in ("document", "question"):
        if name not in state or state.get(name) is None:  # type: ignore[misc]
            msg = f"input is missing {name!r}: pass {{'document': str, 'question': str}}"
            raise ValueError(msg)
        value = state[name]  # type: ignore[literal-required]
        if not isinstance(value, str):
            msg = f"{name!r} must be a str, got {type(value).__name__}"
            raise TypeError(msg)
        values[name] = value
    if not values["question"].strip():
        msg = "'question' is empty: ask something about the document"
        raise ValueError(msg)
    return values["document"], values["question"]


def make_check(settings: Settings) -> Runnable[RLMState, dict[str, Any]]:
    """Build the ``check`` node.

    Args:
        settings: The graph's settings.

    Returns:
        The node runnable.
    """

    def check(state: RLMState) -> PlanSteps:
        document, question = _validate(state)
        configurable = get_config().get("configurable", {})
        run_key = configurable.get(CONFIG_RUN_KEY) or uuid.uuid4().hex
        run = Level.current(settings, run_key)
        # A nested level of a run without a checkpointer gets its leaves, not its text.
        leaves = run.leaves
        scope = (run.offset, run.offset + (leaves[-1].end - run.offset if leaves else len(document)))
        progress = run.writer(scope)
        progress.progress("check", "started", "check.started", chars=scope[1] - scope[0])
        # Accumulators are reset so a second question on the same thread starts clean.
        update: dict[str, Any] = {
            "run_key": run_key,
            "depth": run.depth,
            "offset": run.offset,
            "chars": scope[1] - scope[0],
            "findings": reset([]),
            "errors": reset([]),
            # Every counter present from the start (failed_parts: 0, cached_calls: 0, ...).
            "usage": reset(zero_usage(run.depth)),
            "parts": [],
        }
        if not leaves and not has_text(document):
            progress.progress("check", "done", "check.empty")
            run.finish(progress, zero_usage(run.depth))
            return {**update, "route": "empty", "answer": settings.empty_document_message, "citations": []}
        budget = settings.budget_for(question, run.part_tokens)
        update["budget"] = budget
        # A nested level only exists because its text did not fit one call, so only
        # the top level measures (through the run's memo, which split then reuses).
        fits = False
        if run.depth == 0 and settings.may_fit_one_call(len(document), run.part_tokens):
            count_many = run.resources.memo_count(settings.counter.count_many)
            text = neutralize_tags(document)
            # A prefix about one part long is counted here (a few milliseconds at the default
            # limit): most texts that cannot fit show it, and are not counted whole twice.
            if not settings.over_part_limit_early(text, count_many, run.part_tokens):
                args = (text, question, scope, count_many, run.part_tokens)
                measure = functools.partial(settings.fits_one_call_counted, *args)
                # With a large part limit the text to count can be long: off an async run's loop.
                fits = (yield measure) if len(document) > _INLINE_COUNT_CHARS else measure()
        progress.progress("check", "done", "check.fits" if fits else "check.too_long")
        route = "direct" if fits else "split"
        # Navigate mode: a top-level document too long for one call goes to the navigator.
        if not fits and wants_navigate(run.mode, run.depth):
            route = "navigate"
        return {**update, "route": route}

    return planning_runnable("check", check)


def _route(state: RLMState) -> str:
    route = state.get("route")
    if route == "direct":
        return "direct_answer"
    if route == "split":
        return "split"
    if route == "navigate":
        return "navigate"
    return END


route_after_check: Runnable[RLMState, str] = inline_runnable("route_after_check", _route)
"""Pick the next node after ``check``: ``"direct_answer"``, ``"split"``, ``"navigate"``, or
the end for an empty document.

A runnable with an async entry: LangGraph runs a plain sync function given as an edge
in a thread of the loop's executor, and a thread beside a busy event loop waits long
for the GIL (see :func:`rlm_graph.nodes.entry.planning_runnable`); this edge is taken
once per nested invocation.
"""

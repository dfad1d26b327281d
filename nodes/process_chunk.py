"""``process_chunk``: read one part, or invoke the whole graph again on it."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

from langchain_core.runnables import Runnable
from langgraph.errors import GraphBubbleUp, NodeError
from langgraph.types import Command
from rlm_graph.nodes.entry import node_runnable
from rlm_graph.nodes.sends import read_call, read_text
from rlm_graph.state import ChunkTask, Finding, RLMOutput, Status, Usage, merge_usage

from rlm_graph import relay
from rlm_graph.calls import CallSteps, ModelCall, RunnableCall
from rlm_graph.citations import part_citation
from rlm_graph.errors import DepthLimitError, NestedRunError, RLMError, describe_error
from rlm_graph.level import (
    CONFIG_DEPTH,
    CONFIG_LEAVES,
    CONFIG_OFFSET,
    CONFIG_PATH,
    CONFIG_RUN_KEY,
    Level,
    nested_run_config,
)
from rlm_graph.progress import ProgressWriter
from rlm_graph.prompts import NO_RELEVANT_INFORMATION, is_no_relevant
from rlm_graph.quotes import quote_steps
from rlm_graph.replies import Reply
from rlm_graph.reply_forms import Reading, reading_form
from rlm_graph.settings import Settings


def _progress_key(task: ChunkTask) -> tuple[object, ...]:
    return (task["scope"][0], task["scope"][1], task["depth"], "analysis")


def _start(settings: Settings, task: ChunkTask) -> tuple[Level, ProgressWriter]:
    run = Level.current(settings, task["run_key"])
    return run, run.writer((task["scope"][0], task["scope"][1]))


def _part_event(
    run: Level,
    task: ChunkTask,
    progress: ProgressWriter,
    status: Status,
    key: str,
    *,
    finished: bool,
    **fields: Any,
) -> None:
    """Report this part on its level's analysis bar; a finished part advances the bar."""
    counter = _progress_key(task)
    done = run.resources.advance(counter) if finished else run.resources.count(counter)
    # Run-wide: a finished part settles its leaves (a failed nested part settles them all).
    spans = [(leaf[0], leaf[1]) for leaf in task.get("leaves") or [[task["start"], task["end"]]]]
    leaves = run.resources.settle_leaves(spans if finished else ())
    progress.progress(
        "analysis",
        status,
        key,
        done=done,
        total=task["total"],
        span=(task["start"], task["end"]),
        leaves=leaves,
        index=task["index"],
        **fields,
    )


def _on_escalate(run: Level, task: ChunkTask, progress: ProgressWriter) -> Callable[[], None]:
    return functools.partial(_part_event, run, task, progress, "processing", "analysis.escalated", finished=False)


def _nested_request(run: Level, task: ChunkTask, progress: ProgressWriter) -> tuple[dict, dict]:
    child_depth = run.depth + 1
    if child_depth > run.max_depth:
        msg = (
            f"characters {task['start']}-{task['end']} (about {task['tokens']} tokens) still do not fit "
            f"one call at depth {run.depth}, and max_depth is {run.max_depth}"
        )
        raise DepthLimitError(msg, levels=child_depth, max_depth=run.max_depth)
    if task["end"] - task["start"] >= task["scope"][1] - task["scope"][0]:
        msg = f"part {task['start']}-{task['end']} is as large as its parent; refusing to recurse"
        raise RLMError(msg)
    _part_event(run, task, progress, "processing", "analysis.recursing", finished=False)
    config = {
        "configurable": {
            CONFIG_DEPTH: child_depth,
            CONFIG_OFFSET: task["start"],
            CONFIG_RUN_KEY: run.run_key,
            CONFIG_LEAVES: task["leaves"],
            # Its messages start with "Part 3 of 8 > ": the part of this level it reads.
            CONFIG_PATH: [*([index, total] for index, total in run.path), [task["index"], task["total"]]],
        },
        # A readable trace: rlm[depth=1, 120000-240000] > read part 3/8.
        **nested_run_config(child_depth, task["start"], task["end"]),
    }
    # Without a checkpointer the nested level reads its leaves from the run's shared
    # copy, so no slice of the document is made for it.
    return {"document": task.get("text", ""), "question": task["question"]}, config


@contextlib.contextmanager
def _nested_failure(task: ChunkTask) -> Iterator[None]:
    """Turn a nested run's failure into one that the parent will not retry.

    The nested run already retried its own calls; retrying here would re-read its
    whole subtree. LangGraph's control-flow exceptions (interrupts) pass through.
    """
    try:
        yield
    except GraphBubbleUp:
        raise
    except RLMError:
        raise
    except Exception as exc:
        msg = f"nested run on characters {task['start']}-{task['end']} failed: {describe_error(exc)}"
        raise NestedRunError(msg) from exc


def _finish(
    run: Level,
    task: ChunkTask,
    progress: ProgressWriter,
    text: str,
    citations: list[Any],
    usage: Usage,
    errors: list[dict[str, Any]],
    *,
    cached: bool = False,
) -> dict[str, Any]:
    finding: Finding = {
        "start": task["start"],
        "end": task["end"],
        "text": text,
        "citations": citations,  # type: ignore[typeddict-item]
        "run_key": run.run_key,
    }
    if cached:
        _part_event(run, task, progress, "cached", "analysis.cached", finished=True)
    else:
        _part_event(run, task, progress, "done", "analysis.done", finished=True)
    return {"findings": [finding], "usage": usage, "errors": errors}


def _quoted(run: Level, task: ChunkTask, progress: ProgressWriter, reply: str) -> CallSteps:
    """The reading's finding and its citations: its located quotes, else the whole part.

    Steps: locating pauses after each tolerant search, so an async run's loop turns meanwhile.
    """
    if is_no_relevant(reply):
        return reply, [{"start": task["start"], "end": task["end"], "kind": "part"}], 0
    text = read_text(run, task)
    quoted = yield from quote_steps(reply, text, task["start"], task["end"])
    if quoted.unsupported:
        _part_event(
            run,
            task,
            progress,
            "processing",
            "analysis.unsupported_quotes",
            finished=False,
            count=len(quoted.unsupported),
            quotes=quoted.unsupported,
        )
    if quoted.citations:
        return quoted.text, quoted.citations, len(quoted.unsupported)
    # No locatable quote: the part itself is the citation, so no finding loses its source,
    # unless the part says otherwise than the reader's quote (another number, a "not"). Its
    # sentence nearest the report shows a person where to look in it.
    fallback = [] if quoted.contradicted else [part_citation(text, task["start"], task["end"], quoted.text)]
    return quoted.text, fallback, len(quoted.unsupported)


def _from_read(run: Level, task: ChunkTask, progress: ProgressWriter, reply: Reply[Reading]) -> CallSteps:
    start, end = task["start"], task["end"]
    errors = reply.errors(start, end, f"the model's reading of characters {start}-{end}")
    if reply.value is None:
        # Read twice and understood neither time: no finding, never a guess either way. The
        # errors entry and the answer's note say so (rlm_graph.coverage).
        _part_event(run, task, progress, "failed", "analysis.unparsed", finished=True, reply=reply.text[:200])
        finding: Finding = {
            "start": task["start"],
            "end": task["end"],
            "text": NO_RELEVANT_INFORMATION,
            "citations": [],
            "run_key": run.run_key,
        }
        return {"findings": [finding], "usage": reply.usage, "errors": errors}
    text, citations, unsupported = yield from _quoted(run, task, progress, reply.value.text)
    # A reading that made no call at all (its reply, and any escalation's, came from
    # the reply cache) is a cached part.
    cached = not reply.cost.get("llm_calls") and bool(reply.cost.get("cached_calls"))
    usage = merge_usage(reply.usage, {"cached_parts": 1}) if cached else reply.usage
    if unsupported:
        usage = merge_usage(usage, {"unsupported_quotes": unsupported})
    return _finish(run, task, progress, text, citations, usage, errors, cached=cached)


def _from_nested(run: Level, task: ChunkTask, progress: ProgressWriter, output: RLMOutput) -> dict[str, Any]:
    citations = [dict(c) for c in output["citations"]]
    return _finish(run, task, progress, output["answer"], citations, output["usage"], list(output["errors"]))


def _read_call(settings: Settings, run: Level, task: ChunkTask, structured: bool) -> ModelCall:
    return read_call(settings, run, task, structured=structured)


def _steps(graph: Callable[[], Runnable], settings: Settings, run: Level, task: ChunkTask) -> CallSteps:
    progress = run.writer((task["scope"][0], task["scope"][1]))
    if task["fits"]:
        if run.first_attempt:  # a retry was announced by its own event (_announce_retry)
            _part_event(run, task, progress, "processing", "analysis.processing", finished=False)
        form = reading_form(settings.large_model is not None)
        calls = functools.partial(_read_call, settings, run, task)
        reply = yield from relay.read(run, calls, _on_escalate(run, task, progress), form)
        return (yield from _from_read(run, task, progress, reply))
    payload, config = _nested_request(run, task, progress)
    with _nested_failure(task):
        output = yield RunnableCall(graph(), payload, config, {"context": run.context})
    return _from_nested(run, task, progress, output)


def _announce_retry(run: Level, task: ChunkTask, fields: dict[str, Any]) -> None:
    progress = run.writer((task["scope"][0], task["scope"][1]))
    _part_event(run, task, progress, "retrying", "retry.part", finished=False, **fields)


def make_process_chunk(settings: Settings, graph: Callable[[], Runnable]) -> Runnable[ChunkTask, dict[str, Any]]:
    """Build the ``process_chunk`` node (sync and async).

    A part that fits is read with one call. A part that does not is handed to a
    nested invocation of the same compiled graph at depth + 1; its answer
    becomes this part's finding.

    Args:
        settings: The graph's settings.
        graph: Returns the compiled graph itself, for nested invocations.

    Returns:
        The node runnable.
    """
    return node_runnable(
        "process_chunk", settings, functools.partial(_steps, graph, settings), on_retry=_announce_retry
    )


def make_chunk_error_handler(settings: Settings) -> Callable[[ChunkTask, NodeError], Command]:
    """Build the error handler of ``process_chunk``.

    It runs once a part has failed for good (after retries): the span and the
    reason go to ``errors`` and to a ``failed`` progress event, and the part's
    siblings carry on.

    Args:
        settings: The graph's settings.

    Returns:
        The handler.
    """

    def on_chunk_error(task: ChunkTask, error: NodeError) -> Command:
        run, progress = _start(settings, task)
        reason = describe_error(error.error)
        _part_event(run, task, progress, "failed", "analysis.failed", finished=True, error=reason)
        # A handler has no outgoing edge of its own; without the goto, a level whose
        # parts all failed would end without synthesizing (or explaining) anything.
        return Command(
            update={
                "errors": [{"start": task["start"], "end": task["end"], "error": reason, "kind": "failed"}],
                "usage": {"failed_parts": 1},
            },
            goto="synthesize",
        )

    return on_chunk_error

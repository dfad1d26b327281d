"""The navigator's tools, run by LangGraph's ``ToolNode``; the document comes from the graph state.

Tool names and arguments are a contract (clients and tests rely on them): ``search(query, k)``,
``grep(pattern, max_hits)``, ``peek(start, end)``, ``ask(question, spans)``,
``ask_all(question, output)`` and ``final(answer, citations)``. Arguments are validated and
bad ones come back to the model as an error message; nothing the model writes is executed.

Each tool is written once, as steps (:mod:`rlm_graph.steps`): an async run goes through
them on its event loop, giving it back while a document or a span is planned, and runs
what cannot pause (building the search index, matching a pattern) in a thread.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.runnables import Runnable
from langgraph.prebuilt import ToolRuntime
from langgraph.types import Command

from rlm_graph.coverage import subtract_spans
from rlm_graph.level import Level
from rlm_graph.navigate import reading
from rlm_graph.navigate.aggregate import EXPECTED, render
from rlm_graph.navigate.document import NavDocument, cut_to_tokens, plan_nav_document
from rlm_graph.navigate.options import NAVIGATE_MESSAGES, NavigateOptions
from rlm_graph.progress import ProgressWriter
from rlm_graph.prompts import neutralize_tags
from rlm_graph.settings import Settings
from rlm_graph.state import Usage
from rlm_graph.steps import Steps, run_steps

__all__ = ["MESSAGES_KEY", "Navigation"]

MESSAGES_KEY = "nav_messages"


class Navigation:
    """Binds the tools to the graph's settings; one per graph."""

    def __init__(self, settings: Settings, options: NavigateOptions, graph: Callable[[], Runnable]) -> None:
        self.settings = settings
        self.options = options
        # Returns the compiled graph (bound late): it reads a span too large for one call.
        self.graph = graph

    @property
    def result_limit(self) -> int:
        """Most tokens of one tool result."""
        return max(64, int(self.settings.input_window * self.options.tool_result_share))

    def templates(self, run: Level) -> dict[str, str]:
        """Navigate templates under the graph's and the run's ``progress_messages``."""
        return {**NAVIGATE_MESSAGES, **run.templates}

    def ready(self, state: dict[str, Any]) -> Steps[tuple[Level, NavDocument, ProgressWriter]]:
        """The invocation, the planned document and a progress writer for a tool or root call, as steps."""
        run = Level.current(self.settings, state["run_key"])
        part = self.settings.budget_for(state["question"], run.part_tokens)["part_tokens"]
        nav = yield from plan_nav_document(
            run.resources,
            lambda: neutralize_tags(state["document"]),
            part,
            run.resources.memo_count(self.settings.counter.count_many),
        )
        progress = ProgressWriter(self.templates(run), run.depth, (0, len(nav.text)))
        return run, nav, progress

    def start(self, state: dict[str, Any]) -> tuple[Level, NavDocument, ProgressWriter]:
        """:meth:`ready` run straight through (the document is planned already when an async run asks)."""
        return run_steps(self.ready(state))

    def reply(
        self,
        runtime: ToolRuntime,
        name: str,
        content: str,
        note: str,
        *,
        usage: Usage | None = None,
        errors: list[dict[str, Any]] | None = None,
        stop: str | None = None,
        read: list[tuple[int, int]] | None = None,
    ) -> Command:
        """The tool's result as a state update: the (cut) message, its usage, errors and the text it read."""
        text, cut = cut_to_tokens(content, self.result_limit, self.settings.counter)
        if cut:
            text += "\n[result cut to fit the window]"
        message = ToolMessage(text, tool_call_id=runtime.tool_call_id, name=name, artifact={"note": note})
        update: dict[str, Any] = {MESSAGES_KEY: [message]}
        if usage:
            update["usage"] = usage
        if errors:
            update["errors"] = errors
        if stop:
            update["nav_stop"] = stop
        if read:
            update["nav_read"] = [[start, end] for start, end in read]
        return Command(update=update)

    def announce(self, progress: ProgressWriter, tool: str, arguments: dict[str, Any]) -> None:
        """A progress event naming the tool and its arguments in short."""
        shown = json.dumps(arguments, ensure_ascii=False)
        progress.progress("navigate", "processing", "navigate.tool", tool=tool, arguments=shown[:160])

    def done(self, progress: ProgressWriter, tool: str, usage: Usage) -> None:
        """A progress event with the tool's cost."""
        progress.progress(
            "navigate",
            "done",
            "navigate.tool_done",
            tool=tool,
            calls=usage.get("llm_calls", 0),
            tokens=usage.get("input_tokens", 0),
        )

    # Tools without model calls.

    def search(self, query: str, k: int, runtime: ToolRuntime) -> Steps[Command]:
        _run, nav, progress = yield from self.ready(runtime.state)
        self.announce(progress, "search", {"query": query, "k": k})
        options = self.settings.retrieval
        try:
            retriever = options.resolved_retriever() if options is not None else None
        except ImportError:
            retriever = None  # bm25s is not installed: rank by query words found instead

        rank = None
        if retriever is not None:
            spans = [(leaf.start, leaf.end) for leaf in nav.leaves]
            index, _, _ = yield from options.index_cache.get_or_build_in_steps(retriever, nav.text, spans)
            rank = index.rank
        text = yield from nav.search(query, k, rank)
        self.done(progress, "search", {})
        return self.reply(runtime, "search", text, f"search {query!r}: {text.splitlines()[0][:120]}")

    def grep(self, pattern: str, max_hits: int, runtime: ToolRuntime) -> Steps[Command]:
        _run, nav, progress = yield from self.ready(runtime.state)
        self.announce(progress, "grep", {"pattern": pattern, "max_hits": max_hits})
        # A pattern may take up to GREP_TIMEOUT_SECONDS to match: off an async run's loop.
        text = yield functools.partial(nav.grep, pattern, max_hits)
        offsets = ", ".join(line.split("]")[0].lstrip("[") for line in text.splitlines()[1:6])
        self.done(progress, "grep", {})
        return self.reply(runtime, "grep", text, f"grep {pattern!r}: {text.splitlines()[0][:80]} at {offsets}")

    def peek(self, start: int, end: int, runtime: ToolRuntime) -> Steps[Command]:
        _run, nav, progress = yield from self.ready(runtime.state)
        self.announce(progress, "peek", {"start": start, "end": end})
        text, shown = nav.peek(start, end, self.result_limit - 64, self.settings.counter)
        self.done(progress, "peek", {})
        note = f"peek {start}-{end}: {text.splitlines()[0][:100]}"
        return self.reply(runtime, "peek", text, note, read=[shown] if shown else None)

    # Tools that read.

    def _ask_jobs(
        self, run: Level, nav: NavDocument, question: str, spans: Any
    ) -> Steps[list[reading.SpanJob] | str]:
        if not isinstance(spans, list) or not spans:
            return "error: spans must be a non-empty list of [start, end] pairs"
        if len(spans) > self.options.max_spans:
            return f"error: at most {self.options.max_spans} spans per ask call, got {len(spans)}"
        if not isinstance(question, str) or not question.strip():
            return "error: the question is empty"
        jobs = []
        for span in spans:
            if not isinstance(span, list | tuple) or len(span) != 2:
                return f"error: each span must be [start, end], got {span!r}"
            if (problem := nav.check_span(span[0], span[1])) is not None:
                return f"error: {problem}"
            try:
                jobs.append((yield from reading.span_job(self.settings, run, nav, question, span[0], span[1])))
            except ValueError as exc:
                return f"error: {exc}"
        return jobs

    @staticmethod
    def _budget_stop(run: Level, outcomes: list[reading.Outcome]) -> str | None:
        """Why the search must stop for the budget: a refused call, or no room left for another round."""
        refused = next((outcome.budget for outcome in outcomes if outcome.budget), None)
        resources = run.resources
        if (
            refused is None
            and resources.max_llm_calls is not None
            and resources.llm_calls + 2 > resources.max_llm_calls
        ):
            # A nested reading may have hit the budget inside its own level: no room for a read and a root call.
            refused = f"{resources.llm_calls} of max_llm_calls={resources.max_llm_calls} used"
        return refused and f"budget:{refused}"

    def _ask_result(
        self, runtime: ToolRuntime, run: Level, outcomes: list[reading.Outcome], progress: ProgressWriter
    ) -> Command:
        usage = reading.total_usage(outcomes)
        errors = [error for outcome in outcomes for error in outcome.errors]
        budget = self._budget_stop(run, outcomes)
        self.done(progress, "ask", usage)
        share = max(64, self.result_limit // max(1, len(outcomes)))

        def within_share(answer: str) -> str:
            # The root model must know an answer is not whole: it may ask again on a smaller span.
            kept, cut = cut_to_tokens(answer, share, self.settings.counter)
            return kept + " [answer cut to its share of the result]" if cut else kept

        text = reading.answers_text(outcomes, within_share)
        spans = ", ".join(f"{o.start}-{o.end}" for o in outcomes)
        read = _read_spans(outcomes, errors)
        return self.reply(runtime, "ask", text, f"ask on {spans}", usage=usage, errors=errors, stop=budget, read=read)

    def ask(self, question: str, spans: list[list[int]], runtime: ToolRuntime) -> Steps[Command]:
        run, nav, progress = yield from self.ready(runtime.state)
        self.announce(progress, "ask", {"question": question, "spans": spans})
        jobs = yield from self._ask_jobs(run, nav, question, spans)
        if isinstance(jobs, str):
            return self.reply(runtime, "ask", jobs, jobs)
        outcomes = yield reading.Reads(run, jobs, self.graph)
        return self._ask_result(runtime, run, outcomes, progress)

    def _all_jobs(
        self, run: Level, nav: NavDocument, question: str, output: str
    ) -> Steps[list[reading.SpanJob] | str]:
        if not isinstance(question, str) or not question.strip():
            return "error: the question is empty"
        try:
            if output == "text":
                jobs = [reading.whole_job(self.settings, run, question, nav.leaves)]
                calls = len(nav.leaves)
            else:
                size = self.options.aggregate_part_tokens or self.settings.max_output_tokens
                part = self.settings.budget_for(question, run.part_tokens)["part_tokens"]
                leaves = yield from nav.plan_leaves_for(min(size, part))
                jobs = reading.leaf_jobs(self.settings, run, question, leaves, output)
                calls = len(jobs)
        except ValueError as exc:
            return f"error: {exc}"
        # Refused up front, before any spending: half a reading would give a wrong total.
        resources = run.resources
        tokens = sum(job.call.prompt_tokens for job in jobs if job.call is not None) or nav.tokens
        if resources.max_llm_calls is not None and resources.llm_calls + calls + 1 > resources.max_llm_calls:
            return (
                f"error: reading the whole document needs at least {calls} model calls; the budget has "
                f"{resources.max_llm_calls - resources.llm_calls - 1} left (one is kept for your final answer)"
            )
        if resources.max_input_tokens is not None and resources.input_tokens + tokens > resources.max_input_tokens:
            return (
                f"error: reading the whole document needs at least {tokens} input tokens; the budget has "
                f"{resources.max_input_tokens - resources.input_tokens} left"
            )
        return jobs

    def _all_result(
        self,
        runtime: ToolRuntime,
        run: Level,
        output: str,
        outcomes: list[reading.Outcome],
        progress: ProgressWriter,
    ) -> Command:
        usage = reading.total_usage(outcomes)
        errors = [error for outcome in outcomes for error in outcome.errors]
        budget = self._budget_stop(run, outcomes)
        if output == "text":
            text = reading.answers_text(outcomes, lambda answer: answer)
            unread = [o for o in outcomes if o.text is None and not o.blank]
            if unread:
                text += (
                    f"\nWarning: {len(unread)} part(s) could not be read: "
                    + ", ".join(f"{o.start}-{o.end}" for o in unread[:10])
                )
        else:
            text = self._merged_text(output, outcomes)
        self.done(progress, "ask_all", usage)
        return self.reply(
            runtime,
            "ask_all",
            text,
            f"ask_all ({output}): {text.splitlines()[0][:100]}",
            usage=usage,
            errors=errors,
            stop=budget,
            read=_read_spans(outcomes, errors),
        )

    def _merged_text(self, output: str, outcomes: list[reading.Outcome]) -> str:
        """The exact merge of the replies that could be read, headed by what it leaves out.

        A reply that was not in the asked form, a failed read or a read the budget refused
        is not in the merge; the root model is told how many and which spans, so it can
        re-ask them or say in its answer that the result is incomplete.
        """
        counter = self.settings.counter
        missing = [outcome for outcome in outcomes if outcome.value is None and not outcome.blank]
        limit = self.result_limit - 200
        if not missing:
            return render(output, reading.aggregate(output, outcomes), limit, counter)
        unparsed = [o for o in missing if any(e.get("kind") == "unparsed" for e in o.errors)]
        refused = [o for o in missing if o.budget]
        failed = len(missing) - len(unparsed) - len(refused)
        what = {"count": "total", "tally": "tally", "list": "list"}[output]
        reasons = [
            f"{len(unparsed)} repl{'y' if len(unparsed) == 1 else 'ies'} could not be read as {EXPECTED[output]}"
            if unparsed
            else "",
            f"{failed} failed" if failed else "",
            f"{len(refused)} not read for the budget" if refused else "",
        ]
        spans = ", ".join(f"{o.start}-{o.end}" for o in missing[:10]) + (" ..." if len(missing) > 10 else "")
        head = (
            f"Incomplete: {len(missing)} of {len(outcomes)} parts could not be read and are not in the {what} "
            f"({'; '.join(r for r in reasons if r)}): characters {spans}."
        )
        if unparsed:
            head += f" One reply began: {unparsed[0].errors[0]['reply'][:80]!r}."
        head += f" Re-ask those spans with ask(question, spans), or say in your answer that the {what} leaves them out."
        if len(missing) == len(outcomes):
            return head
        body = render(output, reading.aggregate(output, outcomes), limit - counter.count(head), counter)
        return f"{head}\n{body}"

    def ask_all(self, question: str, output: str, runtime: ToolRuntime) -> Steps[Command]:
        run, nav, progress = yield from self.ready(runtime.state)
        self.announce(progress, "ask_all", {"question": question, "output": output})
        jobs = yield from self._all_jobs(run, nav, question, output)
        if isinstance(jobs, str):
            return self.reply(runtime, "ask_all", jobs, jobs)
        outcomes = yield reading.Reads(run, jobs, self.graph)
        return self._all_result(runtime, run, output, outcomes, progress)


def _read_spans(outcomes: list[reading.Outcome], errors: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """The text the readers read: spans with an answer, less what failed or was skipped inside them.

    A span whose reply could not be read was read, and is reported as such (``answer.unparsed``).
    """
    answered = [
        (outcome.start, outcome.end)
        for outcome in outcomes
        if outcome.text is not None or any(e.get("kind") == "unparsed" for e in outcome.errors)
    ]
    lost = [(e["start"], e["end"]) for e in errors if e.get("kind", "failed") in ("failed", "skipped")]
    return subtract_spans(answered, lost)

"""The ``navigate`` node: one root-model call per step, with a window-safe conversation.

The root model sees the question, the document's size and an outline, never the document.
It answers with tool calls; ``navigate_tools`` (LangGraph's ``ToolNode``) runs them and comes
back here. ``final`` ends the run. A reply without tool calls is never the answer: calls it
wrote as text are read as calls (:mod:`rlm_graph.navigate.protocol`), otherwise it is reminded
once, and a second such reply ends the run with that reported. When ``max_steps`` or the
budget runs out, the model is asked once more, without tool rounds left, for its final answer.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, NotRequired

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, RemoveMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.constants import TAG_NOSTREAM
from langgraph.graph import END
from langgraph.graph.message import REMOVE_ALL_MESSAGES, add_messages
from langgraph.types import Command

from rlm_graph.call_usage import model_usage
from rlm_graph.citations import part_citation
from rlm_graph.coverage import Coverage, subtract_spans
from rlm_graph.errors import BudgetExceededError
from rlm_graph.level import Level
from rlm_graph.navigate.options import NavigateOptions
from rlm_graph.navigate.protocol import REMINDER, calls_in_text, repaired
from rlm_graph.navigate.tools import MESSAGES_KEY, Navigation
from rlm_graph.navigate.toolset import read_spans
from rlm_graph.nodes.entry import entry_runnable
from rlm_graph.progress import ProgressWriter, format_message
from rlm_graph.prompts import is_no_relevant
from rlm_graph.reasoning import visible_text
from rlm_graph.retries import pending_retry
from rlm_graph.state import Citation, RLMState, Usage, merge_usage, reset
from rlm_graph.state.schema import accumulate
from rlm_graph.steps import Steps, arun_steps, run_steps
from rlm_graph.timeouts import ainvoke_within, invoke_within

__all__ = ["NavState", "bind_root_model", "make_navigate"]

_COMPACTED = "[compacted] "


class NavState(RLMState):
    """The graph state plus the navigator's conversation (only the navigate nodes read it)."""

    nav_messages: Annotated[list[AnyMessage], add_messages]
    nav_steps: NotRequired[int]
    nav_stop: NotRequired[str | None]
    """Set by a tool when the budget refused a call: ``"budget:<reason>"``."""
    nav_read: Annotated[list[list[int]], accumulate]
    """``[start, end]`` of the text a reader (``ask``, ``ask_all``) or the root model (``peek``) read."""


def bind_root_model(model: BaseChatModel, tools: list[Any]) -> Runnable | None:
    """The root model with the tools bound, or ``None`` when it has no tool calling."""
    try:
        return model.bind_tools(tools)
    except Exception:  # noqa: BLE001 - NotImplementedError on BaseChatModel, or a provider refusing the schemas:
        # either way this graph cannot navigate, and its other modes must still build.
        return None


class _Root:
    def __init__(self, navigation: Navigation, bound: Runnable, tools: list[Any]) -> None:
        self.nav = navigation
        self.settings = navigation.settings
        self.options: NavigateOptions = navigation.options
        self.bound = bound
        self.names = [tool.name for tool in tools]
        schemas = [json.dumps(convert_to_openai_tool(tool)) for tool in tools]
        self.tools_tokens = sum(self.settings.counter.count_many(schemas)) + 16 * len(schemas)

    def count(self, messages: list[BaseMessage]) -> int:
        """Prompt tokens of the conversation, tool-call arguments included."""
        texts = [
            m.text + (json.dumps(m.tool_calls) if isinstance(m, AIMessage) and m.tool_calls else "") for m in messages
        ]
        return sum(self.settings.counter.count_many(texts)) + 4 * len(texts) + 3 + self.tools_tokens

    def compact(self, messages: list[BaseMessage], limit: int) -> list[BaseMessage]:
        """Replace the oldest tool results by their short notes until the conversation fits ``limit``."""
        messages = list(messages)
        for index, message in enumerate(messages):
            if self.count(messages) <= limit:
                break
            if message.type == "tool" and not str(message.content).startswith(_COMPACTED):
                note = (getattr(message, "artifact", None) or {}).get("note") or "an earlier tool result"
                messages[index] = message.model_copy(update={"content": _COMPACTED + note[:300]})
        # Still too long (many long tool calls): drop the oldest whole rounds, a tool call with its
        # results, so the conversation stays well formed; the question and outline always stay.
        while self.count(messages) > limit:
            first_round = next((i for i, m in enumerate(messages) if i >= 2 and isinstance(m, AIMessage)), None)
            if first_round is None or first_round >= len(messages) - 2:
                break
            end = first_round + 1
            while end < len(messages) and messages[end].type == "tool":
                end += 1
            del messages[first_round:end]
        return messages

    def first_messages(self, state: dict[str, Any], progress: ProgressWriter) -> list[BaseMessage]:
        _run, nav, _ = self.nav.start(state)
        limit = int(self.settings.input_window * self.options.outline_share)
        outline = nav.outline(self.options.outline_entries, limit, self.settings.counter)
        progress.progress("navigate", "started", "navigate.started", chars=len(nav.text))
        prompt = self.options.prompt.format(
            question=state["question"], chars=len(nav.text), tokens=nav.tokens, outline=outline
        )
        return [SystemMessage(self.options.system_prompt), HumanMessage(prompt)]

    def prepare(
        self, state: dict[str, Any], forced: str | None = None
    ) -> tuple[Level, ProgressWriter, dict[str, Any], list, int, str | None]:
        run, _nav, progress = self.nav.start(state)
        first = state.get("route") == "navigate"
        messages = self.first_messages(state, progress) if first else list(state.get(MESSAGES_KEY) or [])
        steps = 0 if first else state.get("nav_steps") or 0
        reason = None
        stop = forced or (None if first else state.get("nav_stop"))
        templates = self.nav.templates(run)
        if stop:
            reason = format_message(templates, "answer.navigate_reason_budget", detail=stop.split(":", 1)[-1])
        elif steps + 1 >= self.options.max_steps:
            reason = format_message(templates, "answer.navigate_reason_steps", max_steps=self.options.max_steps)
        if reason:
            progress.progress("navigate", "processing", "navigate.stopping", reason=reason)
            messages.append(HumanMessage(format_message(templates, "answer.navigate_last_call", reason=reason)))
        else:
            progress.progress(
                "navigate", "processing", "navigate.step", step=steps + 1, max_steps=self.options.max_steps
            )
        limit = self.settings.input_window
        compacted = self.compact(messages, limit)
        update: dict[str, Any] = {"route": "navigating", "nav_steps": steps + 1, "nav_stop": None}
        if first:
            update["nav_read"] = reset([])  # a new question on the same thread has read nothing yet
        # Written back by id, so the checkpointed conversation stays compacted too.
        kept = {id(message) for message in compacted}
        by_id = {message.id: message for message in compacted if message.id}
        changed = [by_id[m.id] for m in messages if m.id in by_id and by_id[m.id] is not m]
        dropped = [RemoveMessage(id=m.id) for m in messages if m.id and m.id not in by_id]
        update[MESSAGES_KEY] = (
            [RemoveMessage(id=REMOVE_ALL_MESSAGES), *compacted]
            if first
            else changed + dropped + ([messages[-1]] if reason and id(messages[-1]) in kept else [])
        )
        return run, progress, update, compacted, self.count(compacted), reason

    def spend(self, run: Level, tokens: int, last: bool) -> None:
        """Book a root call; every other step keeps one call in reserve for the last one."""
        resources = run.resources
        if last:
            resources.spend(tokens, synthesis=True)
            return
        resources.spend(tokens)
        if resources.max_llm_calls is not None or resources.max_input_tokens is not None:
            # The tools may not spend what the final answer needs (held like a synthesis).
            held = min(self.settings.input_window, (resources.max_input_tokens or 10**12) // 4)
            resources.reserve(1, held, 1, held)

    def finish(
        self,
        state: dict[str, Any],
        run: Level,
        progress: ProgressWriter,
        update: dict[str, Any],
        reply: AIMessage | None,
        reason: str | None,
        usage: Usage,
    ) -> Command:
        calls = list(reply.tool_calls) if reply is not None else []
        final = next((call for call in calls if call["name"] == "final"), None)
        templates = self.nav.templates(run)
        if reply is not None and final is None and calls and not reason:
            update[MESSAGES_KEY] = [*update[MESSAGES_KEY], reply]
            update["usage"] = usage
            return Command(update=update, goto="navigate_tools")
        if final is not None:
            answer = str(final["args"].get("answer") or "").strip()
            citations = _citations(final["args"].get("citations"), run.resources.text or state["document"], answer)
        else:
            answer = (visible_text(reply) if reply is not None else "").strip()
            citations = []
        coverage = self.coverage(state)
        if is_no_relevant(answer):
            # The readers' marker is not an answer: absence is claimed only for a document read in full.
            read_all = coverage.read_in_full and not reason
            answer = "" if read_all else format_message(templates, "answer.not_found_in_read")
        if reason:
            note = format_message(templates, "answer.navigate_stopped", reason=reason)
            if not answer:
                note = format_message(templates, "answer.navigate_no_answer", reason=reason)
            answer = f"{answer}\n\n{note}".strip() if note else answer
        if not answer:
            answer = self.settings.no_answer_message
        notes = coverage.notes(templates)
        if notes:
            answer = answer.rstrip() + "\n\n" + " ".join(notes)
        usage = merge_usage(usage, coverage.usage())
        progress.progress("navigate", "done", "navigate.done", step=update["nav_steps"])
        if reply is not None:
            update[MESSAGES_KEY] = [*update[MESSAGES_KEY], reply]
        run.finish(progress, merge_usage(state.get("usage"), usage))
        return Command(update={**update, "usage": usage, "answer": answer, "citations": citations}, goto=END)

    def read_reply(
        self,
        run: Level,
        progress: ProgressWriter,
        messages: list[BaseMessage],
        reply: AIMessage,
        reason: str | None,
        usage: Usage,
        config: RunnableConfig,
    ) -> Steps[tuple[AIMessage | None, Usage, dict[str, Any] | None]]:
        """The reply as tool calls: its own, the ones it wrote as text, or a second reply's after a reminder.

        A reply without a tool call is never taken as the answer (a local model wrote its calls
        as JSON text, and that JSON became the answer). Calls written as text are taken when
        unambiguous; otherwise the model is reminded once, and a second reply without a call
        is reported as unparsed (an ``errors`` entry and ``usage["unparsed_replies"]``).

        Returns:
            The reply with tool calls (``None`` when there is none), the usage with the retry's,
            and the ``unparsed`` error entry when the model gave no call twice.
        """
        if reply.tool_calls:
            return reply, usage, None
        repairs: Usage = {"root_replies_repaired": 1}
        if (written := calls_in_text(visible_text(reply), self.names)) is not None:
            progress.progress("navigate", "processing", "navigate.calls_from_text", calls=len(written))
            return repaired(reply, written), merge_usage(usage, repairs), None
        problems = [f"{call.get('name')}: {call.get('error')}" for call in reply.invalid_tool_calls]
        detail = f" (these calls could not be read: {'; '.join(problems)[:300]})" if problems else ""
        retry = [*messages, reply, HumanMessage(REMINDER.format(detail=detail, tools=", ".join(self.names)))]
        tokens = self.count(retry)
        try:
            self.spend(run, tokens, reason is not None)
        except BudgetExceededError:
            second = None  # no budget for a reminder: the reply stays unread
        else:
            progress.progress("navigate", "processing", "navigate.reminded")
            second = yield _RootCall(run, self.bound, retry, self.settings.call_timeout, config, progress)
            usage = merge_usage(usage, self.usage_of(run, second, tokens))
            if second.tool_calls:
                return second, merge_usage(usage, repairs), None
            if (written := calls_in_text(visible_text(second), self.names)) is not None:
                return repaired(second, written), merge_usage(usage, repairs), None
        last = second or reply
        unread = {
            "start": 0,
            "end": len(run.resources.text or ""),
            "error": "the root model's reply had no tool call, also after a reminder",
            "kind": "unparsed",
            "reply": last.text[:200],
        }
        return None, merge_usage(usage, {"unparsed_replies": 1}), unread

    def coverage(self, state: dict[str, Any]) -> Coverage:
        """What the readers and the root model read of the document, and what no one did."""
        _run, nav, _ = self.nav.start(state)
        first = state.get("route") == "navigate"  # the state still holds the last question's reads
        read = [] if first else [(start, end) for start, end in state.get("nav_read") or []]
        unread = subtract_spans([(leaf.start, leaf.end) for leaf in nav.leaves], read)
        return Coverage(chars=len(nav.text), errors=state.get("errors") or [], read=read, unread=unread)

    def usage_of(self, run: Level, reply: AIMessage, tokens: int) -> Usage:
        role = "large_model" if self.settings.large_model is not None else "model"
        metadata = reply.usage_metadata or {}
        input_tokens = metadata.get("input_tokens") or tokens
        output_tokens = metadata.get("output_tokens")
        if output_tokens is None:
            output_tokens = self.settings.counter.count(reply.text + json.dumps(reply.tool_calls))
        return {
            "llm_calls": 1,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
            "by_model": {role: model_usage(self.settings.prices, role, input_tokens, output_tokens)},
        }


def _citations(value: Any, text: str, answer: str) -> list[Citation]:
    """The ranges ``final`` cites, in any form a span may be written (:func:`read_spans`), as part-level citations.

    The model names ranges, not quotes: each is shown as a part, with its sentence nearest the
    answer. A range outside the document is clipped; one in no readable form is dropped, and
    the answer stands without it.
    """
    try:
        pairs = read_spans(value)
    except ValueError:
        # One unreadable range: keep the others.
        pairs = []
        for item in value if isinstance(value, list) else []:
            with contextlib.suppress(ValueError):
                pairs.extend(read_spans([item]))
    found = []
    for first, last in pairs:
        start, end = max(0, first), min(len(text), last)
        if start < end:
            found.append(part_citation(text[start:end], start, end, answer))
    return found


def _as_ai(reply: Any) -> AIMessage:
    return reply if isinstance(reply, AIMessage) else AIMessage(str(getattr(reply, "content", reply)))


@dataclass(frozen=True)
class _RootCall:
    """One root-model call as a step request (:mod:`rlm_graph.steps`): called by a sync run, awaited by an async one."""

    run: Level
    bound: Runnable
    messages: list[BaseMessage]
    timeout: float | None
    config: RunnableConfig
    progress: ProgressWriter | None = None
    """Where to say that a failure will be retried (:mod:`rlm_graph.retries`)."""

    def __call__(self) -> AIMessage:
        with self.run.resources.thread_slot(), self._announcing_retry():
            return _as_ai(invoke_within(self.bound, self.messages, self.timeout, self.config))

    async def acall(self) -> AIMessage:
        # Root calls go ahead of queued reads: each one decides what the run does next.
        async with self.run.resources.async_slot((0, 0)):
            with self._announcing_retry():
                return _as_ai(await ainvoke_within(self.bound, self.messages, self.timeout, self.config))

    @contextlib.contextmanager
    def _announcing_retry(self) -> Iterator[None]:
        # The node's retry policy retries a failed root call: the progress stream says so first.
        try:
            yield
        except Exception as error:
            if self.progress is not None and (fields := pending_retry(self.run, error)) is not None:
                self.progress.progress("navigate", "retrying", "retry.navigate", **fields)
            raise


def make_navigate(navigation: Navigation, bound: Runnable | None, tools: list[Any], unsupported: str) -> Runnable:
    """Build the ``navigate`` node (sync and async).

    Args:
        navigation: The tools' shared settings.
        bound: The root model with the tools bound; ``None`` if it has no tool calling.
        tools: Every tool bound to the model (for counting their schemas).
        unsupported: The error message when a run navigates without tool calling.

    Returns:
        The node runnable; it returns a ``Command`` to ``navigate_tools`` or to the end.
    """
    root = _Root(navigation, bound, tools) if bound is not None else None

    def _ready() -> _Root:
        if root is None:
            raise ValueError(unsupported)
        return root

    def plan(state: NavState, forced: str | None = None) -> tuple[_Root, tuple, bool]:
        """Prepare a step and book its call; a refused call turns the step into the last one."""
        node = _ready()
        prepared = node.prepare(dict(state), forced)
        run, _, _, _, tokens, reason = prepared
        try:
            node.spend(run, tokens, reason is not None)
        except BudgetExceededError as exc:
            if state.get("route") == "navigate":
                raise  # nothing was done yet: the usual budget error
            if reason is None:
                return plan(state, f"budget:{exc}")
            return node, prepared, False
        return node, prepared, True

    def root_config(run: Level, reason: str | None) -> RunnableConfig:
        # Tool calls and the last step's answer are internal: the answer is settled (markers,
        # notes) after the call, and a chat node writes the finished message (``call_config``).
        kind = "navigate final" if reason is not None else "navigate"
        metadata = {"rlm_depth": run.depth, "rlm_kind": kind, "rlm_model": "root"}
        return {"tags": [TAG_NOSTREAM], "run_name": f"navigate[depth={run.depth}]", "metadata": metadata}

    def body(state: NavState) -> Steps[Command]:
        # The first step plans the document: an async run does it on the loop, section by section.
        yield from navigation.ready(dict(state))
        node, (run, progress, update, messages, tokens, reason), allowed = plan(state)
        if not allowed:
            return node.finish(dict(state), run, progress, update, None, reason, {})
        config = root_config(run, reason)
        reply = yield _RootCall(run, node.bound, messages, node.settings.call_timeout, config, progress)
        usage = node.usage_of(run, reply, tokens)
        reply, usage, unread = yield from node.read_reply(run, progress, messages, reply, reason, usage, config)
        if unread is not None:
            update["errors"] = [unread]
            why = format_message(node.nav.templates(run), "answer.navigate_reason_no_tool_call")
            return node.finish(dict(state), run, progress, update, None, why, usage)
        return node.finish(dict(state), run, progress, update, reply, reason, usage)

    def navigate(state: NavState) -> Command:
        return run_steps(body(state))

    async def anavigate(state: NavState) -> Command:
        return await arun_steps(body(state))

    return entry_runnable("navigate", navigate, anavigate)

"""One turn of the document chat node, written once for sync and async (:data:`rlm_graph.calls.CallSteps`)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, SystemMessage, trim_messages
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config
from langgraph.config import get_stream_writer
from langgraph.constants import CONFIG_KEY_CHECKPOINTER
from langgraph.graph.state import CompiledStateGraph

from rlm_graph.answer_stream import AnswerStream, answer_stream
from rlm_graph.calls import CallSteps, RunnableCall, adrive, drive
from rlm_graph.chat_messages import (
    DEFAULT_QUESTION,
    combine_documents,
    is_attachment,
    known_pages,
    read_message,
    read_message_in_steps,
    render,
    sha256_hex,
    text_only,
)
from rlm_graph.documents import DEFAULT_DOCUMENT_MESSAGES, ExtractedDocument
from rlm_graph.estimate import settings_of
from rlm_graph.options import default_output_tokens
from rlm_graph.progress import DEFAULT_PROGRESS_MESSAGES, format_message
from rlm_graph.replies import Reply
from rlm_graph.rewrite import RewriteCalls, ask_rewrite
from rlm_graph.settings import Settings
from rlm_graph.state import PartError, ProgressEvent, Usage, merge_usage
from rlm_graph.steps import Steps
from rlm_graph.tokens import TokenCounter, counter_for_model, safety_margin
from rlm_graph.window import SEAM_SLACK

__all__ = ["DocumentTurn"]


def _rewrite_window(model: BaseChatModel, settings: Settings | None, counter: TokenCounter) -> tuple[int, int] | None:
    """Most prompt tokens one call of ``model`` may use, and the reply room kept beside them.

    Planned like the analysis graph's calls; ``None`` when the model's window is unknown.
    """
    profile = getattr(model, "profile", None) or {}
    window = profile.get("max_input_tokens") if isinstance(profile, Mapping) else None
    if settings is not None and (not isinstance(window, int) or window >= settings.context_window):
        # The analysis graph's model (or one at least as large): same window, margin and reply budget.
        return settings.input_window, settings.max_output_tokens
    if not isinstance(window, int):
        return None
    output = settings.max_output_tokens if settings is not None else default_output_tokens(window)
    return window - safety_margin(counter, window) - output - SEAM_SLACK, output


ANALYSIS_RUN_NAME = "rlm"
"""Run name of the analysis graph's invocation in a chat turn."""


def _message_id() -> str:
    # The stored AIMessage carries its id from the start, so the message that
    # stream_mode="messages" yields (LangGraph emits a node's new messages when the
    # node ends) and the one in state are the same message, never shown twice.
    return str(uuid.uuid4())


class DocumentTurn:
    """One chat turn of the document node: rewrite the question if need be, then run the analysis graph."""

    def __init__(
        self,
        model: BaseChatModel,
        graph: CompiledStateGraph,
        *,
        document_key: str,
        usage_key: str,
        history_tokens: int,
        condense_prompt: str,
        missing_document_message: str,
        question_too_long_message: str,
        attachment_placeholder: str,
        durable_analysis: bool,
        unsupported_attachment_message: str,
        document_messages: Mapping[str, str] | None,
        rewrite_unparsed_note: str = "",
    ) -> None:
        self.model = model
        self.graph = graph
        self.document_key = document_key
        self.usage_key = usage_key
        self.history_tokens = history_tokens
        self.condense_prompt = condense_prompt
        self.missing_document_message = missing_document_message
        self.question_too_long_message = question_too_long_message
        self.attachment_placeholder = attachment_placeholder
        self.durable_analysis = durable_analysis
        self.unsupported_attachment_message = unsupported_attachment_message
        self.rewrite_unparsed_note = rewrite_unparsed_note
        self.document_messages = {**DEFAULT_DOCUMENT_MESSAGES, **(document_messages or {})}
        try:
            self.settings: Settings | None = settings_of(graph)
        except TypeError:  # a graph not built by create_rlm_graph: no budgets to check against
            self.settings = None
        # Count with the analysis graph's counter, so both sides agree on what fits.
        self.counter = self.settings.counter if self.settings is not None else counter_for_model(model)
        planned = _rewrite_window(model, self.settings, self.counter)
        self.condense_window = planned[0] if planned is not None else None
        # The rewrite asks for the analysis graph's reply format (a JSON schema where the model takes one).
        reply_format = self.settings.reply_format if self.settings is not None else "auto"
        self.rewrite_calls = RewriteCalls(model, reply_format, *(planned or (None, None)), counter=self.counter)

    def _too_long(self, question: str, usage: Usage | None = None) -> dict[str, Any]:
        reply = self.question_too_long_message.format(tokens=self.counter.count(question))
        return {"reply": reply, "usage": usage or {}}

    def _condense_messages(self, history: Sequence[BaseMessage], question: str) -> list[BaseMessage]:
        return [
            SystemMessage("You rewrite follow-up questions so they stand alone."),
            HumanMessage(
                self.condense_prompt.format(history="\n".join(render(m) for m in history), question=question)
            ),
        ]

    def _condense(self, earlier: Sequence[AnyMessage], question: str) -> dict[str, Any]:
        """Plan the rewrite call: as much recent history as fits the window and ``history_tokens``."""
        limit = self.condense_window
        room = self.history_tokens
        if limit is not None:
            fixed = self.counter.count_messages(self._condense_messages([], question))
            if fixed > limit:
                return self._too_long(question)
            room = min(room, limit - fixed)
        if room <= 0:
            return {}
        history = trim_messages(
            text_only(earlier),
            max_tokens=room,
            # Count the lines as the prompt renders them, not as chat messages.
            token_counter=lambda messages: self.counter.count("\n".join(render(m) for m in messages)),
            strategy="last",
            allow_partial=True,  # keeps the end of a long last answer rather than nothing
        )
        messages = self._condense_messages(history, question)
        # Seams between lines may merge tokens differently: drop the oldest line until the prompt fits.
        while limit is not None and history and self.counter.count_messages(messages) > limit:
            history = history[1:]
            messages = self._condense_messages(history, question)
        return {"condense": messages} if history else {}

    def _plan(self, state: dict[str, Any]) -> Steps[dict[str, Any]]:
        messages: list[AnyMessage] = list(state.get("messages") or [])
        humans = [i for i, m in enumerate(messages) if isinstance(m, HumanMessage)]
        if not humans:
            return {"reply": self.missing_document_message}
        latest = messages[humans[-1]]
        # A long PDF is extracted page by page, pausing in between (an async turn gives its loop back).
        parts = yield from read_message_in_steps(latest, document_messages=self.document_messages)
        attached = parts.documents
        if parts.problems and not attached:
            # Say what is wrong with each file (a scanned PDF, a password...) rather than "no document".
            return {"reply": "\n\n".join(str(problem) for problem in parts.problems)}
        if parts.unsupported and not attached:
            kinds = ", ".join(sorted(set(parts.unsupported)))
            return {"reply": self.unsupported_attachment_message.format(kinds=kinds)}
        if attached:
            extracted: ExtractedDocument | None = combine_documents(attached)
            document: Any = extracted.text
        else:
            document = state.get(self.document_key)
            extracted = known_pages(messages, document) if isinstance(document, str) else None
        if not isinstance(document, str) or not document.strip():
            return {"reply": self.missing_document_message}
        plan: dict[str, Any] = {
            "document": document,
            "extracted": extracted,
            "question": parts.text or DEFAULT_QUESTION,
            "new": bool(attached) and document != state.get(self.document_key),
            "stored": self._stored_message(latest, extracted) if attached else None,
        }
        earlier = messages[: humans[-1]]
        if parts.text and any(isinstance(m, HumanMessage) for m in earlier):
            plan.update(self._condense(earlier, parts.text))
        return plan

    def _stored_message(self, message: BaseMessage, document: ExtractedDocument | None) -> HumanMessage | None:
        """The latest message as the thread keeps it: attachments replaced by a short reference.

        The document is kept once under ``document_key``; a copy in ``messages``
        would be written into every checkpoint of the thread. The references
        (``rlm_attachments``: each attachment's sha256 and length; and
        ``rlm_document``: the joined text's sha256, format and, for a PDF, its pages)
        let later turns give citations their page numbers.
        """
        if document is None or isinstance(message.content, str):
            return None
        content: list[Any] = []
        references: list[dict[str, Any]] = []
        for block in message.content:
            documents = read_message(HumanMessage([block]), document_messages=self.document_messages).documents
            if not is_attachment(block) or not documents:
                content.append(block)
                continue
            text = documents[0].text
            reference = {"sha256": sha256_hex(text), "chars": len(text)}
            references.append(reference)
            placeholder = self.attachment_placeholder.format(
                chars=reference["chars"], sha256=reference["sha256"], sha256_prefix=reference["sha256"][:12]
            )
            content.append({"type": "text", "text": placeholder})
        summary: dict[str, Any] = {"sha256": sha256_hex(document.text), "chars": len(document.text)}
        summary["format"] = document.format
        if document.pages:
            summary["pages"] = [[page.start, page.end, page.number] for page in document.pages]
        if document.sources:
            summary["files"] = [[source.start, source.end, source.name] for source in document.sources]
        return HumanMessage(
            content,
            id=message.id,
            name=message.name,
            additional_kwargs={**message.additional_kwargs, "rlm_attachments": references, "rlm_document": summary},
            response_metadata=message.response_metadata,
        )

    def _standalone(self, plan: dict[str, Any], reply: Reply[str] | None) -> tuple[str, Usage, list[PartError]]:
        """The question the analysis answers: the rewrite, or the user's own words if it could not be read."""
        if reply is None:
            return plan["question"], {}, []
        if not reply.unparsed:
            return reply.value or plan["question"], reply.usage, []
        # Never a guess: a rewrite that is not one question is not used. The user's own words are
        # answered instead, and the progress stream, usage, errors and the answer say so.
        self._progress(plan, "rewrite.unparsed", error=reply.problem)
        return plan["question"], reply.usage, [reply.error(0, 0, "the standalone rewrite of the follow-up")]

    def _progress(self, plan: dict[str, Any], key: str, **fields: Any) -> None:
        if (write := _stream_writer()) is None:
            return
        templates = self.settings.progress_messages if self.settings is not None else DEFAULT_PROGRESS_MESSAGES
        event: ProgressEvent = {
            "type": "progress",
            "stage": "rewrite",
            "status": "failed",
            "message": format_message(templates, key, **fields),
            "depth": 0,
            "done": 0,
            "total": 0,
            "span": None,
            "scope": [0, len(plan["document"])],
            "path": [],
        }
        write(event)

    def _rewrite(self, messages: list[BaseMessage]) -> CallSteps:
        """Ask the chat model for the standalone question: read strictly, corrected once (rule 1)."""
        count = self.counter.count_messages
        reply: Reply[str] = yield from ask_rewrite(self.rewrite_calls, messages, count(messages), count_tokens=count)
        return reply

    def _fits_analysis(self, question: str) -> bool:
        if self.settings is None:
            return True
        try:
            self.settings.budget_for(question)
        except ValueError:
            return False
        return True

    def _analysis_config(self) -> RunnableConfig | None:
        """Config of the nested analysis run.

        Inside a node, a graph inherits the chat's checkpointer and thread, so it
        would write its own checkpoints (every part's payload) into the chat
        thread. A chat turn is re-run as a whole if it fails, so unless durable
        analysis was asked for, the analysis runs without a checkpointer and
        without a thread (its parts then carry offsets, not text).
        """
        named: RunnableConfig = {"run_name": ANALYSIS_RUN_NAME, "metadata": {"rlm_depth": 0}}
        if self.durable_analysis:
            return named
        return {**named, "configurable": {CONFIG_KEY_CHECKPOINTER: None, "thread_id": None}}

    def _reply(self, state: dict[str, Any], plan: dict[str, Any], usage: Usage | None = None) -> dict[str, Any]:
        update: dict[str, Any] = {"messages": [AIMessage(plan["reply"], id=_message_id())]}
        if plan.get("stored") is not None:
            update["messages"].insert(0, plan["stored"])
        if usage:
            update[self.usage_key] = merge_usage(state.get(self.usage_key), usage)
        return update

    def _update(
        self,
        state: dict[str, Any],
        plan: dict[str, Any],
        question: str,
        out: dict[str, Any],
        usage: Usage,
        answer_id: str,
        rewrite_errors: list[PartError],
    ) -> dict[str, Any]:
        total = merge_usage(out["usage"], usage)
        errors = [*out["errors"], *rewrite_errors]
        # The analysis answer goes to the user as is: its notes (parts that could not be
        # read, budget stops) are part of what the user must see; so is a rewrite that
        # could not be read (the question answered is then the user's own words).
        answer = out["answer"]
        if rewrite_errors:
            answer = "\n\n".join(part for part in (answer, self.rewrite_unparsed_note) if part)
        # Offsets refer to the document's text (state[document_key], extracted for PDF, DOCX and
        # HTML); a PDF's citations also name their pages.
        extracted: ExtractedDocument | None = plan.get("extracted")
        citations = [extracted.cite(c) for c in out["citations"]] if extracted is not None else out["citations"]
        message = AIMessage(
            answer,
            id=answer_id,
            additional_kwargs={"citations": citations, "rlm_question": question, "rlm_errors": errors},
            response_metadata={"citations": citations, "rlm_usage": total, "rlm_errors": errors},
        )
        messages = [message] if plan.get("stored") is None else [plan["stored"], message]
        update: dict[str, Any] = {"messages": messages, self.usage_key: merge_usage(state.get(self.usage_key), total)}
        if plan["new"]:
            update[self.document_key] = plan["document"]
        return update

    def _steps(self, state: dict[str, Any], graph: CompiledStateGraph, answer_id: str) -> CallSteps:
        plan = yield from self._plan(state)
        if "reply" in plan:
            return self._reply(state, plan, plan.get("usage"))
        reply = (yield from self._rewrite(plan["condense"])) if "condense" in plan else None
        question, usage, errors = self._standalone(plan, reply)
        if not self._fits_analysis(question):
            return self._reply(state, {**plan, **self._too_long(question)}, usage)
        request = {"document": plan["document"], "question": question}
        out = yield RunnableCall(graph, request, self._analysis_config())
        return self._update(state, plan, question, out, usage, answer_id, errors)

    def invoke(self, state: dict[str, Any], graph: CompiledStateGraph) -> dict[str, Any]:
        """Run one turn with ``graph`` as the analysis graph (sync)."""
        stream = AnswerStream(_message_id(), ensure_config(), _stream_writer())
        with answer_stream(stream):
            update = drive(None, self._steps(state, graph, stream.message_id))
        return _closed(update, stream)

    async def ainvoke(self, state: dict[str, Any], graph: CompiledStateGraph) -> dict[str, Any]:
        """Run one turn with ``graph`` as the analysis graph (async)."""
        stream = AnswerStream(_message_id(), ensure_config(), _stream_writer())
        with answer_stream(stream):
            update = await adrive(None, self._steps(state, graph, stream.message_id))
        return _closed(update, stream)


def _stream_writer() -> Callable[[Any], None] | None:
    """The chat node's custom stream writer: its events reach the caller without ``subgraphs=True``."""
    try:
        return get_stream_writer()
    except RuntimeError:  # run outside a graph: nobody listens
        return None


def _closed(update: dict[str, Any], stream: AnswerStream) -> dict[str, Any]:
    """``update`` with its answer as the streamed message ends it (its rest, notes and citations last)."""
    messages = [stream.close(m) if m.id == stream.message_id else m for m in update.get("messages", [])]
    return {**update, "messages": messages}

"""Put the analysis graph into a chat graph whose state is ``MessagesState``."""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, NotRequired

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    convert_to_messages,
    trim_messages,
)
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langgraph.channels.delta import DeltaChannel
from langgraph.constants import CONFIG_KEY_CHECKPOINTER
from langgraph.graph import MessagesState, add_messages
from langgraph.graph.state import CompiledStateGraph

from rlm_graph.calls import CallSteps, RunnableCall, adrive, drive
from rlm_graph.estimate import settings_of
from rlm_graph.graph import create_rlm_graph
from rlm_graph.settings import Settings
from rlm_graph.state import Usage, merge_usage
from rlm_graph.tokens import TokenCounter, counter_for_model, safety_margin
from rlm_graph.window import SEAM_SLACK

__all__ = [
    "ATTACHMENT_PLACEHOLDER",
    "CONDENSE_PROMPT",
    "DEFAULT_QUESTION",
    "MISSING_DOCUMENT_MESSAGE",
    "QUESTION_TOO_LONG_MESSAGE",
    "UNSUPPORTED_ATTACHMENT_MESSAGE",
    "DocumentChatState",
    "create_document_node",
    "split_message",
]

CONDENSE_PROMPT = """<conversation>
{history}
</conversation>

<follow_up>
{question}
</follow_up>

Task: rewrite the follow-up as one standalone question that can be understood without \
the conversation: replace pronouns and references such as "she", "it" or "that chapter" \
with what they refer to. Do not answer it. Reply with the question only."""

MISSING_DOCUMENT_MESSAGE = (
    "I don't have a document to read yet. Paste it or attach it as a text file, then ask your question."
)
UNSUPPORTED_ATTACHMENT_MESSAGE = (
    "I can only read text attachments (plain text, Markdown, CSV and the like); {kinds} can't be read here. "
    "Please attach the document as text."
)
QUESTION_TOO_LONG_MESSAGE = (
    "Your question is too long for me to work on together with the document (about {tokens} tokens). "
    "Please shorten it, for example by quoting less of the text, and ask again."
)
"""Reply when the question (or its standalone rewrite) leaves no room in the model's window.

May use ``{tokens}``: the question's length in tokens."""
ATTACHMENT_PLACEHOLDER = "[attached document: {chars:,} characters, sha256 {sha256_prefix}]"
"""What an attachment's text is replaced with in the stored conversation.

May use ``{chars}``, ``{sha256}`` and ``{sha256_prefix}`` (its first 12 hex digits)."""
DEFAULT_QUESTION = "Summarize this document."


def _latest(current: str, writes: Sequence[str]) -> str:
    """Reducer of the document channel: the last write wins (any batching gives the same result)."""
    return writes[-1] if writes else current


def _add_message_batches(current: list[AnyMessage], writes: Sequence[Any]) -> list[AnyMessage]:
    """``add_messages`` over a batch of writes, one write after the other (so any batching agrees).

    A ``DeltaChannel`` replays saved writes on every read, so a message written
    without an id (a string or ``(role, text)`` tuple) gets one derived from its
    position and content: the same on every read, as ``RemoveMessage`` needs.
    """
    for write in writes:
        incoming = convert_to_messages(write if isinstance(write, list) else [write])
        for offset, message in enumerate(incoming):
            if not message.id:
                seed = f"{len(current) + offset}\x00{message.type}\x00{message.content!r}"
                message.id = str(uuid.uuid5(uuid.NAMESPACE_URL, seed))
        current = add_messages(current, incoming)
    return current


class DocumentChatState(MessagesState):
    """``MessagesState`` plus the keys the document node reads and writes."""

    messages: Annotated[list[AnyMessage], DeltaChannel(_add_message_batches, list)]
    """The conversation, as with ``add_messages``. A ``DeltaChannel`` (LangGraph beta):
    checkpoints store each turn's new messages, not the whole list again."""

    document: NotRequired[Annotated[str, DeltaChannel(_latest, str)]]
    """The document under discussion; kept across turns of a thread.

    A ``DeltaChannel`` (LangGraph beta): checkpoints store the write that set it,
    not a copy per checkpoint, so follow-up turns add no copy of the document.
    Empty until a document arrives."""
    rlm_usage: NotRequired[Usage]
    """Usage of the analysis runs of this thread, summed."""


def _is_text_type(mime_type: str | None) -> bool:
    return bool(mime_type) and (
        mime_type.startswith("text/") or mime_type in {"application/json", "application/xml", "application/csv"}
    )


def _decode(data: str) -> str:
    if data.startswith("data:"):
        data = data.split(",", 1)[1]
    try:
        return base64.b64decode(data, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return data


def split_message(message: BaseMessage) -> tuple[str, list[str], list[str]]:
    """Separate a human message into its text, its text attachments and other attachments.

    Understands LangChain's standard content blocks (``text``, ``text-plain``,
    ``file`` with ``base64``/``data``/``text``) and OpenAI's ``file`` parts with
    ``file_data``.

    Args:
        message: A chat message.

    Returns:
        The message text, the attached documents' text, and the mime types of
        attachments that are not text.
    """
    if isinstance(message.content, str):
        return message.content, [], []
    texts: list[str] = []
    documents: list[str] = []
    unsupported: list[str] = []
    for block in message.content:
        if isinstance(block, str):
            texts.append(block)
            continue
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "text-plain":
            documents.append(block.get("text") or _decode(block.get("base64", "")))
        elif kind == "file":
            nested = block.get("file") if isinstance(block.get("file"), dict) else {}
            data = block.get("text") or block.get("base64") or block.get("data") or nested.get("file_data", "")
            mime = block.get("mime_type") or (data.split(";")[0][5:] if data.startswith("data:") else None)
            if block.get("text") is not None:
                documents.append(block["text"])
            elif _is_text_type(mime) or (mime is None and nested.get("filename", "").endswith((".txt", ".md"))):
                documents.append(_decode(data))
            else:
                unsupported.append(mime or "unknown")
        elif kind in {"image", "image_url", "audio", "video", "input_audio"}:
            unsupported.append(kind)
    return "\n".join(t for t in texts if t).strip(), documents, unsupported


def _text_only(messages: Sequence[AnyMessage]) -> list[BaseMessage]:
    """History without attachments, so the document never enters the chat model's window."""
    cleaned: list[BaseMessage] = []
    for message in messages:
        if isinstance(message, HumanMessage):
            text, documents, _ = split_message(message)
            if documents and not text:
                text = "(attached a document)"
            cleaned.append(HumanMessage(text))
        elif isinstance(message, AIMessage) and message.text:
            cleaned.append(AIMessage(message.text))
    return cleaned


def _render(message: BaseMessage) -> str:
    return f"{'user' if isinstance(message, HumanMessage) else 'assistant'}: {message.text}"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


def _is_attachment(block: Any) -> bool:
    """Whether a content block is an attachment that ``split_message`` reads as a document or rejects."""
    return isinstance(block, dict) and block.get("type") in {
        "text-plain",
        "file",
        "image",
        "image_url",
        "audio",
        "video",
        "input_audio",
    }


def _input_window(model: BaseChatModel, settings: Settings | None, counter: TokenCounter) -> int | None:
    """Most prompt tokens one call of ``model`` may use, planned like the analysis graph's calls."""
    profile = getattr(model, "profile", None) or {}
    window = profile.get("max_input_tokens") if isinstance(profile, Mapping) else None
    if settings is not None and (not isinstance(window, int) or window >= settings.context_window):
        # The analysis graph's model (or one at least as large): same window, margin and reply budget.
        return settings.input_window
    if not isinstance(window, int):
        return None
    output = settings.max_output_tokens if settings is not None else min(2048, max(256, window // 8))
    return window - safety_margin(counter, window) - output - SEAM_SLACK


class _DocumentNode:
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
        try:
            self.settings: Settings | None = settings_of(graph)
        except TypeError:  # a graph not built by create_rlm_graph: no budgets to check against
            self.settings = None
        # Count with the analysis graph's counter, so both sides agree on what fits.
        self.counter = self.settings.counter if self.settings is not None else counter_for_model(model)
        self.condense_window = _input_window(model, self.settings, self.counter)

    def _too_long(self, question: str, usage: Usage | None = None) -> dict[str, Any]:
        reply = self.question_too_long_message.format(tokens=self.counter.count(question))
        return {"reply": reply, "usage": usage or {}}

    def _condense_messages(self, history: Sequence[BaseMessage], question: str) -> list[BaseMessage]:
        return [
            SystemMessage("You rewrite follow-up questions so they stand alone."),
            HumanMessage(
                self.condense_prompt.format(history="\n".join(_render(m) for m in history), question=question)
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
            _text_only(earlier),
            max_tokens=room,
            # Count the lines as the prompt renders them, not as chat messages.
            token_counter=lambda messages: self.counter.count("\n".join(_render(m) for m in messages)),
            strategy="last",
            allow_partial=True,  # keeps the end of a long last answer rather than nothing
        )
        messages = self._condense_messages(history, question)
        # Seams between lines may merge tokens differently: drop the oldest line until the prompt fits.
        while limit is not None and history and self.counter.count_messages(messages) > limit:
            history = history[1:]
            messages = self._condense_messages(history, question)
        return {"condense": messages} if history else {}

    def _plan(self, state: dict[str, Any]) -> dict[str, Any]:
        messages: list[AnyMessage] = list(state.get("messages") or [])
        humans = [i for i, m in enumerate(messages) if isinstance(m, HumanMessage)]
        if not humans:
            return {"reply": self.missing_document_message}
        latest = messages[humans[-1]]
        question, attached, unsupported = split_message(latest)
        document = "\n\n".join(attached) if attached else state.get(self.document_key)
        if unsupported and not attached:
            return {"reply": UNSUPPORTED_ATTACHMENT_MESSAGE.format(kinds=", ".join(sorted(set(unsupported))))}
        if not isinstance(document, str) or not document.strip():
            return {"reply": self.missing_document_message}
        plan: dict[str, Any] = {
            "document": document,
            "question": question or DEFAULT_QUESTION,
            "new": bool(attached) and document != state.get(self.document_key),
            "stored": self._stored_message(latest, attached),
        }
        earlier = messages[: humans[-1]]
        if question and any(isinstance(m, HumanMessage) for m in earlier):
            plan.update(self._condense(earlier, question))
        return plan

    def _stored_message(self, message: BaseMessage, attached: list[str]) -> HumanMessage | None:
        """The latest message as the thread keeps it: attachments replaced by a short reference.

        The document is kept once under ``document_key``; a copy in ``messages``
        would be written into every checkpoint of the thread.
        """
        if not attached or isinstance(message.content, str):
            return None
        references = [{"sha256": _sha256(text), "chars": len(text)} for text in attached]
        texts = iter(references)
        content: list[Any] = []
        for block in message.content:
            _, documents, _ = split_message(HumanMessage([block])) if _is_attachment(block) else ("", [], [])
            if documents:
                reference = next(texts)
                placeholder = self.attachment_placeholder.format(
                    chars=reference["chars"], sha256=reference["sha256"], sha256_prefix=reference["sha256"][:12]
                )
                content.append({"type": "text", "text": placeholder})
            else:
                content.append(block)
        return HumanMessage(
            content,
            id=message.id,
            name=message.name,
            additional_kwargs={**message.additional_kwargs, "rlm_attachments": references},
            response_metadata=message.response_metadata,
        )

    def _standalone(self, plan: dict[str, Any], reply: BaseMessage | None) -> tuple[str, Usage]:
        if reply is None:
            return plan["question"], {}
        text = reply.text.strip().strip('"').strip()
        metadata = getattr(reply, "usage_metadata", None) or {}
        usage: Usage = {
            "llm_calls": 1,
            "input_tokens": metadata.get("input_tokens", 0),
            "output_tokens": metadata.get("output_tokens", 0),
            "total_tokens": metadata.get("total_tokens", 0),
        }
        return (text.splitlines()[0].strip() if text else plan["question"]), usage

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
        if self.durable_analysis:
            return None
        return {"configurable": {CONFIG_KEY_CHECKPOINTER: None, "thread_id": None}}

    def _reply(self, state: dict[str, Any], plan: dict[str, Any], usage: Usage | None = None) -> dict[str, Any]:
        update: dict[str, Any] = {"messages": [AIMessage(plan["reply"])]}
        if plan.get("stored") is not None:
            update["messages"].insert(0, plan["stored"])
        if usage:
            update[self.usage_key] = merge_usage(state.get(self.usage_key), usage)
        return update

    def _update(self, state: dict[str, Any], plan: dict[str, Any], question: str, out: dict[str, Any], usage: Usage):
        total = merge_usage(out["usage"], usage)
        # The analysis answer goes to the user as is: its notes (parts that could not be
        # read, budget stops) are part of what the user must see.
        message = AIMessage(
            out["answer"],
            additional_kwargs={"citations": out["citations"], "rlm_question": question, "rlm_errors": out["errors"]},
            response_metadata={"citations": out["citations"], "rlm_usage": total, "rlm_errors": out["errors"]},
        )
        messages = [message] if plan.get("stored") is None else [plan["stored"], message]
        update: dict[str, Any] = {"messages": messages, self.usage_key: merge_usage(state.get(self.usage_key), total)}
        if plan["new"]:
            update[self.document_key] = plan["document"]
        return update

    def _question(self, plan: dict[str, Any], reply: BaseMessage | None) -> tuple[str, Usage, bool]:
        question, usage = self._standalone(plan, reply)
        return question, usage, self._fits_analysis(question)

    def _steps(self, state: dict[str, Any]) -> CallSteps:
        plan = self._plan(state)
        if "reply" in plan:
            return self._reply(state, plan, plan.get("usage"))
        reply = (yield RunnableCall(self.model, plan["condense"])) if "condense" in plan else None
        question, usage, fits = self._question(plan, reply)
        if not fits:
            return self._reply(state, {**plan, **self._too_long(question)}, usage)
        request = {"document": plan["document"], "question": question}
        out = yield RunnableCall(self.graph, request, self._analysis_config())
        return self._update(state, plan, question, out, usage)

    def invoke(self, state: dict[str, Any]) -> dict[str, Any]:
        return drive(None, self._steps(state))

    async def ainvoke(self, state: dict[str, Any]) -> dict[str, Any]:
        return await adrive(None, self._steps(state))


def create_document_node(
    model: BaseChatModel,
    graph: CompiledStateGraph | None = None,
    *,
    document_key: str = "document",
    usage_key: str = "rlm_usage",
    history_tokens: int = 2000,
    condense_prompt: str = CONDENSE_PROMPT,
    missing_document_message: str = MISSING_DOCUMENT_MESSAGE,
    question_too_long_message: str = QUESTION_TOO_LONG_MESSAGE,
    attachment_placeholder: str = ATTACHMENT_PLACEHOLDER,
    durable_analysis: bool = False,
    name: str = "analyse_document",
) -> Runnable[dict[str, Any], dict[str, Any]]:
    """Build a chat-graph node that answers the latest human message about a document.

    The document comes from a text attachment of the latest human message (it is
    then saved under ``document_key`` for later turns) or from ``document_key``
    in state. The stored human message keeps a short reference instead of the
    attachment (``attachment_placeholder`` as a text block, and
    ``additional_kwargs["rlm_attachments"]`` with each document's sha256 and
    length), so a thread holds the document once, not in every checkpoint.

    A follow-up question is first rewritten as a standalone question from recent
    history: the most recent turns that fit both ``history_tokens`` and the
    model's window (counted with the analysis graph's token counter; attachments
    are left out, so the document never enters the chat model's window). If the
    question alone, or its rewrite, leaves no room in the window, the node
    replies with ``question_too_long_message`` instead of failing.

    The answer is appended as an ``AIMessage`` holding the analysis answer as is
    (notes about unread parts included), whose ``additional_kwargs["citations"]``
    and ``response_metadata["citations"]`` hold the cited spans; usage is summed
    under ``usage_key``. Without a document the node replies with
    ``missing_document_message``.

    The parent state must have ``messages``, ``document_key`` and ``usage_key``;
    :class:`DocumentChatState` has them.

    Args:
        model: Chat model used to rewrite follow-up questions.
        graph: The analysis graph; defaults to ``create_rlm_graph(model)``.
        document_key: State key holding the document.
        usage_key: State key where usage is summed.
        history_tokens: Most tokens of history used to rewrite a follow-up (the
            window may allow fewer).
        condense_prompt: Template with ``{history}`` and ``{question}``.
        missing_document_message: Reply when there is no document.
        question_too_long_message: Reply when the question does not fit the
            window; may use ``{tokens}``.
        attachment_placeholder: Text that replaces an attachment in the stored
            message; may use ``{chars}``, ``{sha256}`` and ``{sha256_prefix}``.
        durable_analysis: Let the analysis inherit the chat's checkpointer, so
            an interrupted analysis resumes part by part. Off by default: the
            analysis then writes no checkpoints (nor per-part payloads) into the
            chat thread, and a failed turn is re-run as a whole.
        name: Name of the node runnable.

    Returns:
        A runnable for ``StateGraph.add_node`` (sync and async).
    """
    node = _DocumentNode(
        model,
        graph if graph is not None else create_rlm_graph(model),
        document_key=document_key,
        usage_key=usage_key,
        history_tokens=history_tokens,
        condense_prompt=condense_prompt,
        missing_document_message=missing_document_message,
        question_too_long_message=question_too_long_message,
        attachment_placeholder=attachment_placeholder,
        durable_analysis=durable_analysis,
    )
    return RunnableLambda(node.invoke, afunc=node.ainvoke, name=name)

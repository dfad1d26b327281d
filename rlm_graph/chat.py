"""Put the analysis graph into a chat graph whose state is ``MessagesState``."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any, NotRequired

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, SystemMessage, trim_messages
from langchain_core.runnables import Runnable, RunnableLambda
from langgraph.graph import MessagesState
from langgraph.graph.state import CompiledStateGraph

from rlm_graph.graph import create_rlm_graph
from rlm_graph.state import Usage, merge_usage
from rlm_graph.tokens import TiktokenCounter

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
DEFAULT_QUESTION = "Summarize this document."


class DocumentChatState(MessagesState):
    """``MessagesState`` plus the keys the document node reads and writes."""

    document: NotRequired[str]
    """The document under discussion; kept across turns of a thread."""
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
    ) -> None:
        self.model = model
        self.graph = graph
        self.document_key = document_key
        self.usage_key = usage_key
        self.history_tokens = history_tokens
        self.condense_prompt = condense_prompt
        self.missing_document_message = missing_document_message
        self.counter = TiktokenCounter()

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
        plan: dict[str, Any] = {"document": document, "question": question or DEFAULT_QUESTION, "new": bool(attached)}
        earlier = messages[: humans[-1]]
        if question and any(isinstance(m, HumanMessage) for m in earlier):
            history = trim_messages(
                _text_only(earlier),
                max_tokens=self.history_tokens,
                token_counter=self.counter.count_messages,
                strategy="last",
                start_on="human",
            )
            if history:
                lines = [f"{'user' if isinstance(m, HumanMessage) else 'assistant'}: {m.text}" for m in history]
                plan["condense"] = [
                    SystemMessage("You rewrite follow-up questions so they stand alone."),
                    HumanMessage(self.condense_prompt.format(history="\n".join(lines), question=question)),
                ]
        return plan

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

    def _update(self, state: dict[str, Any], plan: dict[str, Any], question: str, out: dict[str, Any], usage: Usage):
        total = merge_usage(out["usage"], usage)
        message = AIMessage(
            out["answer"],
            additional_kwargs={"citations": out["citations"], "rlm_question": question, "rlm_errors": out["errors"]},
            response_metadata={"citations": out["citations"], "rlm_usage": total, "rlm_errors": out["errors"]},
        )
        update: dict[str, Any] = {"messages": [message], self.usage_key: merge_usage(state.get(self.usage_key), total)}
        if plan["new"]:
            update[self.document_key] = plan["document"]
        return update

    def invoke(self, state: dict[str, Any]) -> dict[str, Any]:
        plan = self._plan(state)
        if "reply" in plan:
            return {"messages": [AIMessage(plan["reply"])]}
        reply = self.model.invoke(plan["condense"]) if "condense" in plan else None
        question, usage = self._standalone(plan, reply)
        out = self.graph.invoke({"document": plan["document"], "question": question})
        return self._update(state, plan, question, out, usage)

    async def ainvoke(self, state: dict[str, Any]) -> dict[str, Any]:
        plan = self._plan(state)
        if "reply" in plan:
            return {"messages": [AIMessage(plan["reply"])]}
        reply = await self.model.ainvoke(plan["condense"]) if "condense" in plan else None
        question, usage = self._standalone(plan, reply)
        out = await self.graph.ainvoke({"document": plan["document"], "question": question})
        return self._update(state, plan, question, out, usage)


def create_document_node(
    model: BaseChatModel,
    graph: CompiledStateGraph | None = None,
    *,
    document_key: str = "document",
    usage_key: str = "rlm_usage",
    history_tokens: int = 2000,
    condense_prompt: str = CONDENSE_PROMPT,
    missing_document_message: str = MISSING_DOCUMENT_MESSAGE,
    name: str = "analyse_document",
) -> Runnable[dict[str, Any], dict[str, Any]]:
    """Build a chat-graph node that answers the latest human message about a document.

    The document comes from a text attachment of the latest human message (it is
    then saved under ``document_key`` for later turns) or from ``document_key``
    in state. A follow-up question is first rewritten as a standalone question
    from recent history (trimmed to ``history_tokens`` with ``trim_messages``;
    attachments are left out, so the document never enters the chat model's
    window). The answer is appended as an ``AIMessage`` whose
    ``additional_kwargs["citations"]`` and ``response_metadata["citations"]``
    hold the cited spans; usage is summed under ``usage_key``. Without a
    document the node replies with ``missing_document_message``.

    The parent state must have ``messages``, ``document_key`` and ``usage_key``;
    :class:`DocumentChatState` has them.

    Args:
        model: Chat model used to rewrite follow-up questions.
        graph: The analysis graph; defaults to ``create_rlm_graph(model)``.
        document_key: State key holding the document.
        usage_key: State key where usage is summed.
        history_tokens: Most tokens of history used to rewrite a follow-up.
        condense_prompt: Template with ``{history}`` and ``{question}``.
        missing_document_message: Reply when there is no document.
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
    )
    return RunnableLambda(node.invoke, afunc=node.ainvoke, name=name)

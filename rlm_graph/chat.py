"""Put the analysis graph into a chat graph whose state is ``MessagesState``."""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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

from rlm_graph.documents import (
    DEFAULT_DOCUMENT_MESSAGES,
    DOCX_MIME_TYPE,
    DocumentError,
    ExtractedDocument,
    Page,
    detect_format,
    extract_text,
    html_to_text,
)
from rlm_graph.estimate import settings_of
from rlm_graph.graph import create_rlm_graph
from rlm_graph.settings import SEAM_SLACK, Settings
from rlm_graph.state import Usage, merge_usage
from rlm_graph.tokens import TokenCounter, counter_for_model, safety_margin

__all__ = [
    "ATTACHMENT_PLACEHOLDER",
    "CONDENSE_PROMPT",
    "DEFAULT_QUESTION",
    "MISSING_DOCUMENT_MESSAGE",
    "QUESTION_TOO_LONG_MESSAGE",
    "UNSUPPORTED_ATTACHMENT_MESSAGE",
    "DocumentChatState",
    "MessageParts",
    "create_document_node",
    "read_message",
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
    "I don't have a document to read yet. Paste it or attach it (PDF, Word, HTML, Markdown or text), "
    "then ask your question."
)
UNSUPPORTED_ATTACHMENT_MESSAGE = (
    "I can read PDF, Word (.docx), HTML, Markdown and plain-text attachments; {kinds} can't be read here. "
    "Please attach the document in one of those formats."
)
"""Reply when no attachment of the latest message is a document; may use ``{kinds}``."""
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


def _bytes(data: str) -> bytes | None:
    """The bytes of base64 data (a data URL or bare base64), or ``None`` when it is not base64."""
    try:
        return base64.b64decode(data.split(",", 1)[1] if data.startswith("data:") else data, validate=True)
    except (binascii.Error, ValueError, IndexError):
        return None


_MIME_OF = {"pdf": "application/pdf", "docx": DOCX_MIME_TYPE, "html": "text/html"}
# Extracting a long PDF takes seconds, and one message is read more than once (a router,
# then the node): keep the last few extractions, by content hash.
_EXTRACTED: OrderedDict[tuple[str, str | None, str | None], ExtractedDocument] = OrderedDict()
_EXTRACTED_SIZE = 4
_EXTRACTED_LOCK = threading.Lock()  # sync nodes of concurrent runs share it


def _extract(raw: bytes, mime: str | None, filename: str | None, messages: Mapping[str, str]) -> ExtractedDocument:
    key = (hashlib.sha256(raw).hexdigest(), mime, filename)
    with _EXTRACTED_LOCK:
        if key in _EXTRACTED:
            _EXTRACTED.move_to_end(key)
            return _EXTRACTED[key]
    document = extract_text(raw, mime_type=mime, filename=filename or "The attachment", messages=messages)
    with _EXTRACTED_LOCK:
        _EXTRACTED[key] = document
        while len(_EXTRACTED) > _EXTRACTED_SIZE:
            _EXTRACTED.popitem(last=False)
    return document


def _read_file_block(block: Mapping[str, Any], messages: Mapping[str, str]) -> ExtractedDocument | DocumentError | str:
    """A ``file`` block's document, the reason it cannot be read, or (a string) its unsupported kind."""
    nested = block.get("file") if isinstance(block.get("file"), dict) else {}
    extras = block.get("extras") if isinstance(block.get("extras"), dict) else {}
    filename = block.get("filename") or nested.get("filename") or extras.get("filename")
    data = block.get("base64") or block.get("data") or nested.get("file_data", "")
    mime = block.get("mime_type") or (data.split(";")[0][5:] if data.startswith("data:") else None)
    if block.get("text") is not None:
        kind = detect_format(b"", mime, filename)
        return ExtractedDocument(html_to_text(block["text"]) if kind == "html" else block["text"], kind or "text")
    raw = _bytes(data)
    if raw is None:  # not base64: the text itself (raw HTML, say)
        raw = data.encode("utf-8", errors="surrogatepass")
    kind = detect_format(raw, mime, filename)
    try:
        if kind in {"pdf", "docx", "html"}:
            return _extract(raw, mime, filename, messages)
    except DocumentError as exc:
        return exc
    if kind in {"text", "markdown"} or _is_text_type(mime):
        # Text is decoded leniently: a stray byte should not cost the user their question.
        return ExtractedDocument(_decode(data), "markdown" if kind == "markdown" else "text")
    return mime or "unknown"


@dataclass
class MessageParts:
    """What :func:`read_message` finds in a message."""

    text: str
    """The message's own text."""
    documents: list[ExtractedDocument] = field(default_factory=list)
    """Attached documents, their text extracted (PDF, DOCX, HTML) or as is (text, Markdown)."""
    unsupported: list[str] = field(default_factory=list)
    """Mime types (or block types, such as ``image``) of attachments that are not documents."""
    problems: list[DocumentError] = field(default_factory=list)
    """Documents whose text could not be extracted (a scanned PDF, a password...), each saying why."""


def read_message(message: BaseMessage, *, document_messages: Mapping[str, str] | None = None) -> MessageParts:
    """Separate a human message into its text, its documents and the attachments that cannot be read.

    Understands LangChain's standard content blocks (``text``, ``text-plain``,
    ``file`` with ``base64``/``data``/``text``) and OpenAI's ``file`` parts with
    ``file_data``. PDF, DOCX and HTML files are extracted to text (see
    :func:`rlm_graph.documents.extract_text`; PDF and DOCX need the
    ``documents`` extra); Markdown and plain text are kept as they are.

    Args:
        message: A chat message.
        document_messages: Templates of extraction problems, merged over
            :data:`rlm_graph.documents.DEFAULT_DOCUMENT_MESSAGES`.

    Returns:
        The message's text, documents, unsupported kinds and extraction problems.
    """
    if isinstance(message.content, str):
        return MessageParts(message.content)
    templates = {**DEFAULT_DOCUMENT_MESSAGES, **(document_messages or {})}
    texts: list[str] = []
    parts = MessageParts("")
    for block in message.content:
        if isinstance(block, str):
            texts.append(block)
            continue
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "text-plain":
            parts.documents.append(ExtractedDocument(block.get("text") or _decode(block.get("base64", "")), "text"))
        elif kind == "file":
            found = _read_file_block(block, templates)
            if isinstance(found, ExtractedDocument):
                parts.documents.append(found)
            elif isinstance(found, DocumentError):
                parts.problems.append(found)
            else:
                parts.unsupported.append(found)
        elif kind in {"image", "image_url", "audio", "video", "input_audio"}:
            parts.unsupported.append(kind)
    parts.text = "\n".join(t for t in texts if t).strip()
    return parts


def split_message(message: BaseMessage) -> tuple[str, list[str], list[str]]:
    """Separate a human message into its text, its documents' text and other attachments.

    Like :func:`read_message`, whose documents it returns as text; a document
    whose text cannot be extracted counts as an unsupported attachment.

    Args:
        message: A chat message.

    Returns:
        The message text, the attached documents' text (extracted from PDF,
        DOCX and HTML), and the mime types of attachments that cannot be read.
    """
    parts = read_message(message)
    unreadable = [_MIME_OF.get(problem.format or "", "unknown") for problem in parts.problems]
    return parts.text, [document.text for document in parts.documents], parts.unsupported + unreadable


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


def _combine(documents: list[ExtractedDocument]) -> ExtractedDocument:
    """Attachments as one document (joined by blank lines), their pages moved to where they now lie."""
    if len(documents) == 1:
        return documents[0]
    pages: list[Page] = []
    position = 0
    for document in documents:
        pages.extend(Page(p.start + position, p.end + position, p.number) for p in document.pages or ())
        position += len(document.text) + 2
    text = "\n\n".join(document.text for document in documents)
    kinds = {document.format for document in documents}
    return ExtractedDocument(text, kinds.pop() if len(kinds) == 1 else "text", tuple(pages) or None)


def _known_pages(messages: Sequence[AnyMessage], document: str) -> ExtractedDocument | None:
    """The pages of ``document`` saved by the turn that attached it (a PDF), if it is still the thread's document."""
    for message in reversed(messages):
        summary = message.additional_kwargs.get("rlm_document") if isinstance(message, HumanMessage) else None
        if isinstance(summary, dict) and summary.get("pages"):
            if summary.get("chars") != len(document) or summary.get("sha256") != _sha256(document):
                return None  # the document was replaced since (for example through state)
            pages = tuple(Page(start, end, number) for start, end, number in summary["pages"])
            return ExtractedDocument(document, summary.get("format", "pdf"), pages)
    return None


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
        unsupported_attachment_message: str,
        document_messages: Mapping[str, str] | None,
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
        self.document_messages = {**DEFAULT_DOCUMENT_MESSAGES, **(document_messages or {})}
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
        parts = read_message(latest, document_messages=self.document_messages)
        attached = parts.documents
        if parts.problems and not attached:
            # Say what is wrong with each file (a scanned PDF, a password...) rather than "no document".
            return {"reply": "\n\n".join(str(problem) for problem in parts.problems)}
        if parts.unsupported and not attached:
            kinds = ", ".join(sorted(set(parts.unsupported)))
            return {"reply": self.unsupported_attachment_message.format(kinds=kinds)}
        if attached:
            extracted: ExtractedDocument | None = _combine(attached)
            document: Any = extracted.text
        else:
            document = state.get(self.document_key)
            extracted = _known_pages(messages, document) if isinstance(document, str) else None
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
            if not _is_attachment(block) or not documents:
                content.append(block)
                continue
            text = documents[0].text
            reference = {"sha256": _sha256(text), "chars": len(text)}
            references.append(reference)
            placeholder = self.attachment_placeholder.format(
                chars=reference["chars"], sha256=reference["sha256"], sha256_prefix=reference["sha256"][:12]
            )
            content.append({"type": "text", "text": placeholder})
        summary: dict[str, Any] = {"sha256": _sha256(document.text), "chars": len(document.text)}
        summary["format"] = document.format
        if document.pages:
            summary["pages"] = [[page.start, page.end, page.number] for page in document.pages]
        return HumanMessage(
            content,
            id=message.id,
            name=message.name,
            additional_kwargs={**message.additional_kwargs, "rlm_attachments": references, "rlm_document": summary},
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
        # Offsets refer to the document's text (state[document_key], extracted for PDF, DOCX and
        # HTML); a PDF's citations also name their pages.
        extracted: ExtractedDocument | None = plan.get("extracted")
        citations = [extracted.cite(c) for c in out["citations"]] if extracted is not None else out["citations"]
        message = AIMessage(
            out["answer"],
            additional_kwargs={"citations": citations, "rlm_question": question, "rlm_errors": out["errors"]},
            response_metadata={"citations": citations, "rlm_usage": total, "rlm_errors": out["errors"]},
        )
        messages = [message] if plan.get("stored") is None else [plan["stored"], message]
        update: dict[str, Any] = {"messages": messages, self.usage_key: merge_usage(state.get(self.usage_key), total)}
        if plan["new"]:
            update[self.document_key] = plan["document"]
        return update

    def _question(self, plan: dict[str, Any], reply: BaseMessage | None) -> tuple[str, Usage, bool]:
        question, usage = self._standalone(plan, reply)
        return question, usage, self._fits_analysis(question)

    def invoke(self, state: dict[str, Any], graph: CompiledStateGraph) -> dict[str, Any]:
        plan = self._plan(state)
        if "reply" in plan:
            return self._reply(state, plan, plan.get("usage"))
        reply = self.model.invoke(plan["condense"]) if "condense" in plan else None
        question, usage, fits = self._question(plan, reply)
        if not fits:
            return self._reply(state, {**plan, **self._too_long(question)}, usage)
        out = graph.invoke({"document": plan["document"], "question": question}, self._analysis_config())
        return self._update(state, plan, question, out, usage)

    async def ainvoke(self, state: dict[str, Any], graph: CompiledStateGraph) -> dict[str, Any]:
        plan = self._plan(state)
        if "reply" in plan:
            return self._reply(state, plan, plan.get("usage"))
        reply = await self.model.ainvoke(plan["condense"]) if "condense" in plan else None
        question, usage, fits = self._question(plan, reply)
        if not fits:
            return self._reply(state, {**plan, **self._too_long(question)}, usage)
        out = await graph.ainvoke({"document": plan["document"], "question": question}, self._analysis_config())
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
    question_too_long_message: str = QUESTION_TOO_LONG_MESSAGE,
    attachment_placeholder: str = ATTACHMENT_PLACEHOLDER,
    durable_analysis: bool = False,
    name: str = "analyse_document",
    unsupported_attachment_message: str = UNSUPPORTED_ATTACHMENT_MESSAGE,
    document_messages: Mapping[str, str] | None = None,
) -> Runnable[dict[str, Any], dict[str, Any]]:
    """Build a chat-graph node that answers the latest human message about a document.

    The document comes from an attachment of the latest human message (it is
    then saved under ``document_key`` for later turns) or from ``document_key``
    in state. PDF, DOCX and HTML attachments are extracted to text (PDF and DOCX
    need the ``documents`` extra), Markdown and plain text are read as they are;
    ``document_key`` then holds the extracted text, which citation offsets refer
    to. A file whose text cannot be extracted (a scanned PDF without a text
    layer, a password, damage) gets a reply saying so (``document_messages``).
    The stored human message keeps a short reference instead of the attachment
    (``attachment_placeholder`` as a text block, and
    ``additional_kwargs["rlm_attachments"]`` with each document's sha256 and
    length; ``additional_kwargs["rlm_document"]`` describes the joined text: its
    sha256, length, format and a PDF's page ranges), so a thread holds the document once, not in
    every checkpoint.

    A follow-up question is first rewritten as a standalone question from recent
    history: the most recent turns that fit both ``history_tokens`` and the
    model's window (counted with the analysis graph's token counter; attachments
    are left out, so the document never enters the chat model's window). If the
    question alone, or its rewrite, leaves no room in the window, the node
    replies with ``question_too_long_message`` instead of failing.

    The answer is appended as an ``AIMessage`` holding the analysis answer as is
    (notes about unread parts included), whose ``additional_kwargs["citations"]``
    and ``response_metadata["citations"]`` hold the cited spans (offsets into
    ``document_key``; for a PDF also ``page`` and ``last_page``, on follow-up
    turns too); usage is summed
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
        unsupported_attachment_message: Reply when no attachment is a document
            (an image, a spreadsheet...); may use ``{kinds}``.
        document_messages: Replies for files whose text cannot be extracted, by
            reason, merged over ``rlm_graph.documents.DEFAULT_DOCUMENT_MESSAGES``.

    Returns:
        A runnable for ``StateGraph.add_node`` (sync and async). Its functions
        name the analysis graph, so ``get_graph(xray=True)`` of the chat graph
        (Studio's graph view) shows the analysis graph's nodes inside it.
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
        unsupported_attachment_message=unsupported_attachment_message,
        document_messages=document_messages,
    )
    analysis = node.graph

    # The analysis graph is named in these closures on purpose: LangGraph finds a graph that a
    # node's function uses (its nonlocals), so ``get_graph(xray=True)`` (Studio's graph view) shows
    # the analysis graph's nodes inside this one, and ``get_state(subgraphs=True)`` knows it.
    def analyse(state: dict[str, Any]) -> dict[str, Any]:
        return node.invoke(state, analysis)

    async def aanalyse(state: dict[str, Any]) -> dict[str, Any]:
        return await node.ainvoke(state, analysis)

    return RunnableLambda(analyse, afunc=aanalyse, name=name)

"""Chat messages as the document node reads them: text, documents (extracted), and what cannot be read."""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage

from rlm_graph.documents import (
    DEFAULT_DOCUMENT_MESSAGES,
    DOCX_MIME_TYPE,
    DocumentError,
    ExtractedDocument,
    Page,
    Source,
    detect_format,
    extract_text_in_steps,
    html_to_text,
    normalize_text,
)
from rlm_graph.steps import Steps, run_steps

__all__ = [
    "DEFAULT_QUESTION",
    "UNSUPPORTED_ATTACHMENT_MESSAGE",
    "MessageParts",
    "combine_documents",
    "is_attachment",
    "known_pages",
    "read_message",
    "read_message_in_steps",
    "render",
    "sha256_hex",
    "split_message",
    "text_only",
]

UNSUPPORTED_ATTACHMENT_MESSAGE = (
    "I can read PDF, Word (.docx), HTML, Markdown and plain-text attachments; {kinds} can't be read here. "
    "Please attach the document in one of those formats."
)
"""Reply when no attachment of the latest message is a document; may use ``{kinds}``."""
DEFAULT_QUESTION = "Summarize this document."


def _is_text_type(mime_type: str | None) -> bool:
    return bool(mime_type) and (
        mime_type.startswith("text/") or mime_type in {"application/json", "application/xml", "application/csv"}
    )


def _decode(data: str) -> str:
    if data.startswith("data:"):
        data = data.split(",", 1)[1]
    try:
        return normalize_text(base64.b64decode(data, validate=True).decode("utf-8", errors="replace"))
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


def _extract(
    raw: bytes, mime: str | None, filename: str | None, messages: Mapping[str, str]
) -> Steps[ExtractedDocument]:
    key = (hashlib.sha256(raw).hexdigest(), mime, filename)
    with _EXTRACTED_LOCK:
        if key in _EXTRACTED:
            _EXTRACTED.move_to_end(key)
            return _EXTRACTED[key]
    name = filename or "The attachment"
    document = yield from extract_text_in_steps(raw, mime_type=mime, filename=name, messages=messages)
    with _EXTRACTED_LOCK:
        _EXTRACTED[key] = document
        while len(_EXTRACTED) > _EXTRACTED_SIZE:
            _EXTRACTED.popitem(last=False)
    return document


def _read_file_block(
    block: Mapping[str, Any], messages: Mapping[str, str]
) -> Steps[ExtractedDocument | DocumentError | str]:
    """A ``file`` block's document (named after its file), why it cannot be read, or (a string) its unsupported kind."""
    found = yield from _read_file_content(block, messages)
    if isinstance(found, ExtractedDocument) and found.name is None:
        found = replace(found, name=_file_name(block))
    return found


def _file_name(block: Mapping[str, Any]) -> str | None:
    nested = block.get("file") if isinstance(block.get("file"), dict) else {}
    extras = block.get("extras") if isinstance(block.get("extras"), dict) else {}
    return block.get("filename") or nested.get("filename") or extras.get("filename")


def _read_file_content(
    block: Mapping[str, Any], messages: Mapping[str, str]
) -> Steps[ExtractedDocument | DocumentError | str]:
    nested = block.get("file") if isinstance(block.get("file"), dict) else {}
    filename = _file_name(block)
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
            return (yield from _extract(raw, mime, filename, messages))
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
    return run_steps(read_message_in_steps(message, document_messages=document_messages))


def read_message_in_steps(
    message: BaseMessage, *, document_messages: Mapping[str, str] | None = None
) -> Steps[MessageParts]:
    """:func:`read_message` (same arguments and result) as steps that pause after each PDF page.

    An async node runs them on its event loop (:mod:`rlm_graph.steps`).
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
            found = yield from _read_file_block(block, templates)
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


def text_only(messages: Sequence[AnyMessage]) -> list[BaseMessage]:
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


def render(message: BaseMessage) -> str:
    """A message as one line of a transcript (``user: ...`` or ``assistant: ...``)."""
    return f"{'user' if isinstance(message, HumanMessage) else 'assistant'}: {message.text}"


def sha256_hex(text: str) -> str:
    """Hex SHA-256 of a text (names an attachment in the stored conversation)."""
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


def is_attachment(block: Any) -> bool:
    """Whether a content block is an attachment that ``read_message`` reads as a document or rejects."""
    return isinstance(block, dict) and block.get("type") in {
        "text-plain",
        "file",
        "image",
        "image_url",
        "audio",
        "video",
        "input_audio",
    }


def combine_documents(documents: list[ExtractedDocument]) -> ExtractedDocument:
    """Attachments as one document (joined by blank lines), saying where each file and its pages now lie.

    Pages keep their numbers within their file, and :meth:`ExtractedDocument.cite` names
    the file, so a citation in a text file between two PDFs carries no page, and page 1
    of the second PDF is that PDF's page 1.
    """
    if len(documents) == 1:
        return documents[0]
    pages: list[Page] = []
    sources: list[Source] = []
    position = 0
    for number, document in enumerate(documents, 1):
        pages.extend(Page(p.start + position, p.end + position, p.number) for p in document.pages or ())
        sources.append(Source(position, position + len(document.text), document.name or f"attachment {number}"))
        position += len(document.text) + 2
    text = "\n\n".join(document.text for document in documents)
    kinds = {document.format for document in documents}
    return ExtractedDocument(
        text, kinds.pop() if len(kinds) == 1 else "text", tuple(pages) or None, sources=tuple(sources)
    )


def known_pages(messages: Sequence[AnyMessage], document: str) -> ExtractedDocument | None:
    """Where the pages and files of ``document`` lie, saved by the turn that attached it, if it is still the thread's.

    ``None`` when the turn recorded neither (one file without pages) or the document was replaced since.
    """
    for message in reversed(messages):
        summary = message.additional_kwargs.get("rlm_document") if isinstance(message, HumanMessage) else None
        if isinstance(summary, dict) and (summary.get("pages") or summary.get("files")):
            if summary.get("chars") != len(document) or summary.get("sha256") != sha256_hex(document):
                return None  # the document was replaced since (for example through state)
            pages = tuple(Page(start, end, number) for start, end, number in summary.get("pages") or ())
            sources = tuple(Source(start, end, name) for start, end, name in summary.get("files") or ())
            return ExtractedDocument(document, summary.get("format", "pdf"), pages or None, sources=sources or None)
    return None

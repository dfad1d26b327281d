"""Chat messages as the document node reads them: text, text attachments, and what cannot be read."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage

__all__ = [
    "DEFAULT_QUESTION",
    "UNSUPPORTED_ATTACHMENT_MESSAGE",
    "is_attachment",
    "render",
    "sha256_hex",
    "split_message",
    "text_only",
]

UNSUPPORTED_ATTACHMENT_MESSAGE = (
    "I can only read text attachments (plain text, Markdown, CSV and the like); {kinds} can't be read here. "
    "Please attach the document as text."
)
DEFAULT_QUESTION = "Summarize this document."


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

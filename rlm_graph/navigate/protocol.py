"""The root model's side of the protocol: a reply is tool calls, or it could not be read.

A model served without tool calling, or a small one, writes its calls as JSON in the
reply's text (``{"name": "grep", "arguments": {...}}``, in a Markdown fence, in Qwen's
``<tool_call>`` tags, or in OpenAI's ``{"function": ...}`` shape) instead of the
API's ``tool_calls``. Such a reply is read as those calls when that is unambiguous:
the whole text is the calls, and each names a bound tool. Any other reply without a
call (prose, an answer, a call wrapped in prose) is not guessed at: the navigate node
asks again with :data:`REMINDER`, and a second such reply is reported as unparsed.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Collection
from typing import Any

from langchain_core.messages import AIMessage, ToolCall

__all__ = ["REMINDER", "calls_in_text", "repaired"]

REMINDER = (
    "Your reply had no tool call{detail}. Reply with tool calls only, through the tool-calling interface, not "
    "written as text: one of the tools ({tools}) to explore the document, or final(answer, citations) to give "
    "your answer."
)
"""What the root model is told after a reply without a tool call (fields ``detail`` and ``tools``)."""

_TAGS = re.compile(r"</?tool_call>|^```[\w-]*\s*$|^```\s*", re.MULTILINE)
_ARGUMENT_KEYS = ("arguments", "args", "parameters", "input")


def _call(item: Any, names: Collection[str]) -> ToolCall | None:
    """One written call as a tool call, or ``None`` when it is not clearly a call of a bound tool."""
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("function"), dict) and set(item) <= {"function", "type", "id"}:
        item = item["function"]  # OpenAI's shape
    name = item.get("name")
    keys = [key for key in _ARGUMENT_KEYS if key in item]
    if not isinstance(name, str) or name not in names or len(keys) > 1 or set(item) - {"name", *keys}:
        return None
    arguments = item[keys[0]] if keys else {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return ToolCall(name=name, args=arguments, id=f"call_text_{uuid.uuid4().hex[:12]}", type="tool_call")


def calls_in_text(text: str, names: Collection[str]) -> list[ToolCall] | None:
    """The tool calls a reply wrote as text, when the text is those calls and nothing else.

    Args:
        text: The reply's text.
        names: The names of the tools bound to the model.

    Returns:
        The calls, or ``None`` when the text is not only calls of bound tools (prose, an
        unknown tool, a call inside a sentence).
    """
    body = _TAGS.sub("\n", text).strip()
    if not body.startswith(("{", "[")):
        return None
    decoder = json.JSONDecoder()
    items: list[Any] = []
    position = 0
    while position < len(body):
        try:
            value, position = decoder.raw_decode(body, position)
        except ValueError:
            return None
        items.extend(value if isinstance(value, list) else [value])
        while position < len(body) and body[position] in " \t\r\n,":
            position += 1
    calls = [_call(item, names) for item in items]
    if not calls or None in calls:
        return None
    return calls  # type: ignore[return-value]


def repaired(reply: AIMessage, calls: list[ToolCall]) -> AIMessage:
    """The reply as the tool calls it wrote in its text (the text itself is not kept: it is those calls)."""
    metadata = {"usage_metadata": reply.usage_metadata, "response_metadata": reply.response_metadata}
    return AIMessage("", tool_calls=calls, id=reply.id, **metadata)

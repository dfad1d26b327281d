"""Reasoning a model writes into its reply, set apart from the reply itself.

Reasoning models (DeepSeek-R1 and its distills, Qwen3, QwQ) think between ``<think>`` and
``</think>`` before they answer. An OpenAI-compatible server that does not split that out
into a field of its own (llama.cpp's server with ``--reasoning-format none``, vLLM without
a reasoning parser, older Ollama) returns it at the start of the message ``content``.
Those thoughts are not the reply: they weigh options, draft, doubt, and may name values
the model then rejects. Every reader of a model's reply takes the text after the block:
:func:`split_reasoning` for a whole reply, :class:`ReasoningFilter` for a streamed one.

Two forms are recognised, both at the start of the reply only (a ``<think>`` later in a
reply is the reply's own text):

- ``<think>…</think>`` (or ``<thinking>…</thinking>``), leading whitespace aside;
- text then ``</think>`` with no opening tag: chat templates that put the opening tag in
  the prompt (DeepSeek-R1's) make the reply start inside the block, as vLLM's reasoning
  parsers also assume.

A block that is never closed is all reasoning: the reply is empty (a model stopped at its
``max_tokens`` while thinking).
"""

from __future__ import annotations

import re

from langchain_core.messages import BaseMessage

__all__ = ["ReasoningFilter", "split_reasoning", "visible_text"]

_TAG_NAMES = ("think", "thinking")
_OPENING = re.compile(r"\s*<(" + "|".join(_TAG_NAMES) + r")>", re.IGNORECASE)
_OPENING_TAGS = tuple(f"<{name}>" for name in _TAG_NAMES)


def split_reasoning(text: str) -> tuple[str, str]:
    """Split a reply into the reasoning it starts with and the reply proper.

    Args:
        text: The reply's text, as the server sent it.

    Returns:
        ``(reasoning, reply)``: ``reasoning`` is empty when the reply has no leading block;
        ``reply`` has the whitespace after the block removed.
    """
    if opened := _OPENING.match(text):
        closing = f"</{opened.group(1)}>"
        end = text.lower().find(closing.lower(), opened.end())
        if end < 0:
            return text, ""
        return text[: end + len(closing)], text[end + len(closing) :].lstrip()
    end = text.find("</think>")
    if end >= 0 and "<think>" not in text[:end]:
        return text[: end + len("</think>")], text[end + len("</think>") :].lstrip()
    return "", text


def visible_text(message: BaseMessage) -> str:
    """A message's text without the reasoning it starts with (see :func:`split_reasoning`).

    Args:
        message: A model's reply.

    Returns:
        The reply proper.
    """
    return split_reasoning(message.text)[1]


class ReasoningFilter:
    """:func:`split_reasoning` for a reply that arrives token by token.

    :meth:`feed` returns the reply text a token settles: nothing while the reply may still
    be opening a reasoning block, nothing inside one, and the text after it. A reply
    whose reasoning has no opening tag (the second form) cannot be told apart until its
    ``</think>``; its reasoning is given out as it comes, and the caller learns from the
    whole reply that it was not the answer.
    """

    def __init__(self) -> None:
        """Set up the filter."""
        self._head = ""  # the reply's start, while it may still open a block
        self._closing: str | None = None  # inside a block: the tag that ends it
        self._tail = ""  # inside a block: its last characters, where a closing tag may be starting
        self._after = False  # the block just ended: whitespace after it is dropped
        self._passing = False  # the reply proper is being given out

    def feed(self, token: str) -> str:
        """Add raw text; return the reply text it settles (possibly empty)."""
        if self._passing:
            return self._lstripped(token)
        if self._closing is not None:
            return self._inside(token)
        self._head += token
        head = self._head.lstrip()
        if not head:
            return ""
        if opened := _OPENING.match(self._head):
            self._closing = f"</{opened.group(1).lower()}>"
            rest, self._head = self._head[opened.end() :], ""
            return self._inside(rest)
        if any(tag.startswith(head.lower()) for tag in _OPENING_TAGS):
            return ""  # may still become an opening tag
        self._passing = True
        text, self._head = self._head, ""
        return text

    def _inside(self, token: str) -> str:
        assert self._closing is not None
        text = self._tail + token
        end = text.lower().find(self._closing)
        if end < 0:
            self._tail = text[-(len(self._closing) - 1) :]
            return ""
        after = text[end + len(self._closing) :]
        self._closing, self._tail = None, ""
        self._passing, self._after = True, True
        return self._lstripped(after)

    def _lstripped(self, token: str) -> str:
        if not self._after:
            return token
        token = token.lstrip()
        if token:
            self._after = False
        return token

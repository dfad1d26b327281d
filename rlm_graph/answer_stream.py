"""Token streaming of the final answer into LangGraph's ``stream_mode="messages"``.

Every model call of the analysis graph is tagged ``nostream``: its raw tokens
carry ``[Fn]`` citation markers and "nothing relevant" markers that the user
never sees. The final answer (the depth-0 synthesis or direct answer) is still
streamed token by token: a per-call callback receives the raw tokens, an
:class:`AnswerCleaner` turns them into the text the answer will hold (markers
dropped as soon as a ``[`` is known to open one, ordinary text let through),
and an :class:`AnswerStream` owned by the chat node reports the cleaned text as
``AIMessageChunk`` s of one chat-model run named ``answer``, with the id of the
``AIMessage`` the chat node stores. The chat node then sends the rest (notes of
what was not read) and the citations as a last chunk, so the chunks a UI joins
are the stored message: same id, same text.
"""

from __future__ import annotations

import contextvars
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler, CallbackManager
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, LLMResult
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config
from langchain_core.tracers._streaming import _StreamingCallbackHandler

from rlm_graph.prompts import NO_RELEVANT_INFORMATION, is_no_relevant, strip_citation_markers

__all__ = ["ANSWER_RUN_NAME", "AnswerCleaner", "AnswerStream", "answer_stream", "streaming_config"]

ANSWER_RUN_NAME = "answer"
"""Run name of the chat-model run whose tokens are the streamed answer."""

_CURRENT: contextvars.ContextVar[AnswerStream | None] = contextvars.ContextVar("rlm_answer_stream", default=None)
_DECORATION = "`*\"'."


class AnswerCleaner:
    """Turns a reply's raw tokens into the answer text, prefix by prefix.

    :meth:`feed` returns the cleaned text known so far: it is always a prefix of
    what ``strip_citation_markers(raw, range(1, markers + 1))`` (then ``strip()``
    for a synthesis) gives for the whole reply, because text from an unclosed
    ``[`` on, and trailing whitespace, are held back until more arrives. A reply
    that is the "nothing relevant" marker yields nothing.
    """

    def __init__(self, markers: int, *, strip: bool) -> None:
        """Set up the cleaner.

        Args:
            markers: ``[F1]`` .. ``[Fmarkers]`` are dropped (0: none).
            strip: Strip leading whitespace (a synthesis answer is stripped).
        """
        self.valid = range(1, markers + 1)
        self.strip = strip
        self.raw = ""
        self.answers: bool | None = None  # None: too early to tell a "nothing relevant" reply

    def _clean(self, raw: str) -> str:
        cleaned = strip_citation_markers(raw, self.valid) if self.valid else raw
        return cleaned.strip() if self.strip else cleaned.rstrip()

    def feed(self, token: str) -> str:
        """Add raw text; return the cleaned text that is settled so far."""
        self.raw += token
        # Text before the first "[" that has no "]" after it cannot change any more.
        settled = self.raw
        for match in re.finditer(r"\[", self.raw):
            if "]" not in self.raw[match.start():]:
                settled = self.raw[: match.start()]
                break
        settled = settled.rstrip()  # a marker's regex takes one space before it; trailing space may end the answer
        cleaned = self._clean(settled)
        if self.answers is None:
            if len(cleaned.strip().strip(_DECORATION).strip()) < len(NO_RELEVANT_INFORMATION):
                return ""  # could still be the "nothing relevant" marker; the chat node sends it if not
            self.answers = not is_no_relevant(cleaned)
        return cleaned if self.answers else ""


class AnswerStream:
    """The chat node's streamed answer: one chat-model run whose chunks carry one message id."""

    def __init__(self, message_id: str, config: RunnableConfig) -> None:
        """Set up the stream.

        Args:
            message_id: Id of the ``AIMessage`` the node will store.
            config: The chat node's config (its callbacks and metadata reach LangGraph's messages stream).
        """
        self.message_id = message_id
        self.config = config
        self.streamed = ""
        self.diverged = False
        self._run: Any = None
        self._lock = threading.Lock()

    def _emit(self, text: str, **fields: Any) -> None:
        if self._run is None:
            manager = CallbackManager.configure(
                self.config.get("callbacks"),
                inheritable_tags=self.config.get("tags"),
                inheritable_metadata={**(self.config.get("metadata") or {}), "rlm_kind": "answer"},
            )
            (self._run,) = manager.on_chat_model_start({"name": ANSWER_RUN_NAME}, [[]], name=ANSWER_RUN_NAME)
        chunk = AIMessageChunk(content=text, id=self.message_id, **fields)
        self._run.on_llm_new_token(text, chunk=ChatGenerationChunk(message=chunk))

    def offer(self, cleaned: str) -> None:
        """Stream what ``cleaned`` (the answer so far) adds to what was streamed.

        A retried call starts again from nothing: its text is streamed only where
        it goes beyond what the failed attempt already streamed.
        """
        with self._lock:
            if self.diverged or len(cleaned) <= len(self.streamed):
                return
            if not cleaned.startswith(self.streamed):
                self.diverged = True
                return
            delta = cleaned[len(self.streamed) :]
            self.streamed = cleaned
            self._emit(delta)

    def close(self, message: AIMessage) -> AIMessage:
        """End the stream with ``message`` (the one to store): send its rest and metadata as the last chunk.

        Args:
            message: The stored answer, with this stream's id.

        Returns:
            ``message``; when tokens were streamed, with the streamed text plus the rest as content.
        """
        with self._lock:
            if self._run is None:
                return message  # nothing streamed: LangGraph yields the stored message whole
            text = message.text
            rest = text[len(self.streamed) :] if text.startswith(self.streamed) else ""
            self._emit(
                rest,
                additional_kwargs=dict(message.additional_kwargs),
                response_metadata=dict(message.response_metadata),
            )
            if rest or text.startswith(self.streamed):
                stored = message
            else:
                # The answer's text differs from what was streamed (it should not): keep what the user saw.
                stored = message.model_copy(update={"content": self.streamed})
            self._run.on_llm_end(LLMResult(generations=[[ChatGeneration(message=stored)]]))
            self._run = None
            return stored


class _RawTokens(BaseCallbackHandler, _StreamingCallbackHandler):
    """Callback of one final-answer call: its raw tokens, cleaned, go to the answer stream."""

    run_inline = True  # tokens in order, in the caller's thread

    def __init__(self, stream: AnswerStream, cleaner: AnswerCleaner) -> None:
        self.stream = stream
        self.cleaner = cleaner

    def on_llm_new_token(self, token: str, *, run_id: UUID, **kwargs: Any) -> None:
        self.stream.offer(self.cleaner.feed(token))

    def tap_output_aiter(self, run_id: UUID, output: Any) -> Any:
        return output

    def tap_output_iter(self, run_id: UUID, output: Any) -> Any:
        return output


@contextmanager
def answer_stream(stream: AnswerStream) -> Iterator[AnswerStream]:
    """Make ``stream`` the one the final-answer call of the analysis run in this context reports to."""
    token = _CURRENT.set(stream)
    try:
        yield stream
    finally:
        _CURRENT.reset(token)


def streaming_config(config: RunnableConfig, markers: int, *, strip: bool) -> RunnableConfig:
    """``config`` for a final-answer call, plus the callback that streams its tokens, if a chat node listens.

    Args:
        config: The call's config (run name, tags, metadata).
        markers: How many ``[Fn]`` markers the answer may cite (0: none).
        strip: Whether the answer is stripped (synthesis).

    Returns:
        The config to call the model with.
    """
    stream = _CURRENT.get()
    if stream is None:
        return config
    handler = _RawTokens(stream, AnswerCleaner(markers, strip=strip))
    inherited = ensure_config().get("callbacks")
    if inherited is None:
        callbacks: Any = [handler]
    elif isinstance(inherited, list):
        callbacks = [*inherited, handler]
    else:
        callbacks = inherited.copy()
        callbacks.add_handler(handler, inherit=False)
    return {**config, "callbacks": callbacks}

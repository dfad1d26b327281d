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
are the stored message: same id, same text. When a call that streamed part of
the answer fails and another call writes it (the node's retry), an
``answer.restarted`` custom event tells the UI to drop what it showed; the
chunks after it join to the stored message.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler, CallbackManager
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, LLMResult
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config
from langchain_core.tracers._streaming import _StreamingCallbackHandler

from rlm_graph.prompts import NO_RELEVANT_INFORMATION, drop_citation_markers, is_no_relevant
from rlm_graph.reasoning import ReasoningFilter
from rlm_graph.state import AnswerRestartedEvent

__all__ = [
    "ANSWER_RUN_NAME",
    "RESTARTED_MESSAGE",
    "RESTART_REASONS",
    "AnswerCleaner",
    "AnswerStream",
    "answer_stream",
    "streaming_config",
]

ANSWER_RUN_NAME = "answer"
"""Run name of the chat-model run whose tokens are the streamed answer."""
RESTARTED_MESSAGE = "The answer is being written again"
"""Start of every ``answer.restarted`` event's ``message``; why follows it (:data:`RESTART_REASONS`)."""
RESTART_REASONS = {
    "failed": "the model call that was writing it failed midway",
    "unreadable": "the reply that was writing it could not be read, so the model was asked again",
    "replaced": "the text shown so far is not the answer",
}
"""Why an answer is written again, by cause: the call failed (its error follows in brackets
when known); its reply broke the expected form and a corrective call writes it; or the node
answers with something else (a failed part's note)."""

_CURRENT: contextvars.ContextVar[AnswerStream | None] = contextvars.ContextVar("rlm_answer_stream", default=None)
_DECORATION = "`*\"'."


class AnswerCleaner:
    """Turns a reply's raw tokens into the answer text, piece by piece, in time linear in its length.

    Each :meth:`feed` returns the cleaned text it settled: the pieces join to a
    prefix of what ``strip_citation_markers(raw, range(1, markers + 1))`` gives for
    the whole reply. Text from an unclosed ``[`` on, and trailing whitespace, are
    held back until more arrives. Every raw character is cleaned once: settled text
    is dropped from the cleaner, so a long answer costs no more per token than a
    short one. A reply that is the "nothing relevant" marker yields nothing, and so
    does the reasoning block a reasoning model may start with (:mod:`rlm_graph.reasoning`).
    """

    def __init__(self, markers: int, *, strip: bool) -> None:
        """Set up the cleaner.

        Args:
            markers: ``[F1]`` .. ``[Fmarkers]`` are dropped (0: none).
            strip: Strip leading whitespace (a synthesis answer is stripped).
        """
        self.valid = range(1, markers + 1)
        # strip_citation_markers strips both ends, so an answer with markers loses its leading space too.
        self.lstrip = strip or markers > 0
        self.answers: bool | None = None  # None: too early to tell a "nothing relevant" reply
        self._pending: list[str] = []  # raw text not settled: trailing whitespace, or from an unclosed "[" on
        self._open = False  # the pending text holds a "[" with no "]" after it
        self._started = False  # something other than leading whitespace was given out
        self._space = ""  # cleaned whitespace held back: it may end the answer
        self._held: list[str] = []  # cleaned text kept until a "nothing relevant" reply can be told apart
        self._reasoning = ReasoningFilter()  # a reasoning model's <think> block is not the answer

    def feed(self, token: str) -> str:
        """Add raw text; return the cleaned text it settles (possibly empty)."""
        token = self._reasoning.feed(token)
        if not token:
            return ""
        self._pending.append(token)
        if self._open and "]" not in token:
            return ""  # nothing before the open "[" can change until a "]" arrives
        text = "".join(self._pending)
        # Everything before the first "[" that no "]" follows is settled (a "]" closes every "[" before it).
        opening = text.find("[", text.rfind("]") + 1)
        self._open = opening >= 0
        # Cut where a later marker cannot reach back: not inside a bracket, not after whitespace
        # (a marker takes the space before it), so cleaning piece by piece equals cleaning the whole.
        end = len((text[:opening] if self._open else text).rstrip())
        self._pending = [text[end:]] if end < len(text) else []
        if not end:
            return ""
        piece = drop_citation_markers(text[:end], self.valid) if self.valid else text[:end]
        return self._release(piece)

    def _release(self, piece: str) -> str:
        if self.lstrip and not self._started:
            piece = piece.lstrip()
        body = self._space + piece
        settled = body.rstrip()
        self._space = body[len(settled) :]
        if not settled:
            return ""
        self._started = True
        if self.answers is None:
            self._held.append(settled)
            so_far = "".join(self._held)  # short: only until the marker can be told apart
            if len(so_far.strip().strip(_DECORATION).strip()) < len(NO_RELEVANT_INFORMATION):
                return ""  # could still be the "nothing relevant" marker; the chat node sends it if not
            self.answers = not is_no_relevant(so_far)
            self._held = []
            settled = so_far
        return settled if self.answers else ""


class AnswerStream:
    """The chat node's streamed answer: one chat-model run whose chunks carry one message id.

    Only one call's text is ever the answer. When a new call starts streaming after an
    earlier one streamed text (the earlier call failed midway and was retried, its reply
    could not be read and a corrective call writes the answer, or the answer came another
    way), the UI is told to drop what it showed: an
    ``answer.restarted`` custom event (:class:`rlm_graph.state.AnswerRestartedEvent`)
    goes out before the new call's first token. The stored message is always the
    answer itself, never a failed call's fragment.
    """

    def __init__(self, message_id: str, config: RunnableConfig, write: Callable[[Any], None] | None = None) -> None:
        """Set up the stream.

        Args:
            message_id: Id of the ``AIMessage`` the node will store.
            config: The chat node's config (its callbacks and metadata reach LangGraph's messages stream).
            write: The chat node's custom stream writer (``langgraph.config.get_stream_writer()``),
                for ``answer.restarted`` events; ``None`` outside a graph run.
        """
        self.message_id = message_id
        self.config = config
        self.restarts = 0
        self._write = write
        self._pieces: list[str] = []
        self._attempt: object | None = None
        self._error: BaseException | None = None
        self._run: Any = None
        self._lock = threading.Lock()

    @property
    def streamed(self) -> str:
        """The text streamed since the last restart."""
        with self._lock:
            return "".join(self._pieces)

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

    def _restart(self, *, corrective: bool = False) -> None:
        """Tell the UI that what it showed of this message is not the answer (if anything was shown).

        Args:
            corrective: The new text comes from a corrective call (the last reply could not be read).
        """
        discarded = sum(len(piece) for piece in self._pieces)
        self._pieces = []
        error, self._error = self._error, None
        if not discarded:
            return
        self.restarts += 1
        if corrective:
            why = RESTART_REASONS["unreadable"]
        elif error is not None:
            why = f"{RESTART_REASONS['failed']} ({type(error).__name__}: {error})"
        else:
            why = RESTART_REASONS["replaced"]
        event: AnswerRestartedEvent = {
            "type": "answer.restarted",
            "message_id": self.message_id,
            "discarded": discarded,
            "message": f"{RESTARTED_MESSAGE}: {why}",
        }
        if self._write is not None:
            self._write(event)

    def failed(self, error: BaseException) -> None:
        """Note why the call streaming the answer failed (said in the next ``answer.restarted`` event)."""
        with self._lock:
            self._error = error

    def offer(self, attempt: object, text: str, *, corrective: bool = False) -> None:
        """Stream ``text``, the next cleaned piece of the answer from the call ``attempt``.

        Args:
            attempt: Identifies the model call (one per call, retries included).
            text: What the call's cleaner settled; may be empty (the call has started).
            corrective: ``attempt`` is a corrective call, made because the last reply could not be read.
        """
        with self._lock:
            if attempt is not self._attempt:
                # A new call writes the answer: what an earlier call streamed is not it.
                self._attempt = attempt
                self._restart(corrective=corrective)
            if text:
                self._pieces.append(text)
                self._emit(text)

    def close(self, message: AIMessage) -> AIMessage:
        """End the stream with ``message`` (the one to store): send its rest and metadata as the last chunk.

        Args:
            message: The stored answer, with this stream's id.

        Returns:
            ``message``, unchanged: what is stored is the answer, whatever was streamed.
        """
        with self._lock:
            if self._run is None:
                return message  # nothing streamed: LangGraph yields the stored message whole
            text = message.text
            streamed = "".join(self._pieces)
            if text.startswith(streamed):
                rest = text[len(streamed) :]
            else:
                # The answer is not what was streamed (the call failed and its part's note is the
                # answer): the UI drops what it showed and gets the answer whole.
                self._restart()
                rest = text
            self._emit(
                rest,
                additional_kwargs=dict(message.additional_kwargs),
                response_metadata=dict(message.response_metadata),
            )
            self._run.on_llm_end(LLMResult(generations=[[ChatGeneration(message=message)]]))
            self._run = None
            return message


class _RawTokens(BaseCallbackHandler, _StreamingCallbackHandler):
    """Callback of one final-answer call: its raw tokens, cleaned, go to the answer stream."""

    run_inline = True  # tokens in order, in the caller's thread

    def __init__(self, stream: AnswerStream, cleaner: AnswerCleaner, corrective: bool) -> None:
        self.stream = stream
        self.cleaner = cleaner
        self.corrective = corrective

    def on_llm_new_token(self, token: str, *, run_id: UUID, **kwargs: Any) -> None:
        self.stream.offer(self, self.cleaner.feed(token), corrective=self.corrective)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.stream.failed(error)

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


def streaming_config(
    config: RunnableConfig, markers: int, *, strip: bool, corrective: bool = False
) -> RunnableConfig:
    """``config`` for a final-answer call, plus the callback that streams its tokens, if a chat node listens.

    Args:
        config: The call's config (run name, tags, metadata).
        markers: How many ``[Fn]`` markers the answer may cite (0: none).
        strip: Whether the answer is stripped (synthesis).
        corrective: The call corrects a reply that could not be read (said in ``answer.restarted``).

    Returns:
        The config to call the model with.
    """
    stream = _CURRENT.get()
    if stream is None:
        return config
    handler = _RawTokens(stream, AnswerCleaner(markers, strip=strip), corrective)
    inherited = ensure_config().get("callbacks")
    if inherited is None:
        callbacks: Any = [handler]
    elif isinstance(inherited, list):
        callbacks = [*inherited, handler]
    else:
        callbacks = inherited.copy()
        callbacks.add_handler(handler, inherit=False)
    return {**config, "callbacks": callbacks}

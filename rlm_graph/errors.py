"""Errors raised by rlm-graph and the retry rule for model calls."""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import socket
from collections.abc import Iterator

from langchain_core.exceptions import ContextOverflowError, ModelError

_TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})
_TRANSIENT_NAMES = frozenset(
    {
        "APIConnectionError",
        "APITimeoutError",
        "RateLimitError",
        "InternalServerError",
        "ServiceUnavailableError",
        "ConnectError",
        "ConnectTimeout",
        "ReadTimeout",
        "WriteTimeout",
        "PoolTimeout",
        "RemoteProtocolError",
        "ReadError",
        "NodeTimeoutError",
        # A truncated or garbled body from a flaky proxy: the next attempt usually parses.
        "APIResponseValidationError",
        "JSONDecodeError",
    }
)
MAX_RETRY_AFTER = 120.0
"""Longest ``Retry-After`` honoured, in seconds; longer asks are capped."""


class RLMError(Exception):
    """Base class of the errors this package raises during a run."""


class AllPartsFailedError(RLMError):
    """Every part of a document failed, so there is nothing to answer from."""


class NestedRunError(RLMError):
    """A nested invocation (on a part that was still too large) failed after its own retries."""


class BudgetExceededError(RLMError):
    """The run's plan, or its next call, would exceed ``max_llm_calls`` or ``max_input_tokens``.

    Attributes:
        budget: Which budget: ``"max_llm_calls"`` or ``"max_input_tokens"`` (``None`` if unknown).
        needed: Calls or input tokens the plan or the call would bring the run to.
        limit: The budget's value.
    """

    def __init__(
        self, message: str, *, budget: str | None = None, needed: int | None = None, limit: int | None = None
    ) -> None:
        super().__init__(message)
        self.budget = budget
        self.needed = needed
        self.limit = limit


class EmptyReplyError(RLMError):
    """A model call returned an empty (or whitespace-only) reply.

    A 200 with no content comes from a content filter, a length cut-off or a
    proxy; it says nothing about the document, so it is retried like a transient
    error and never taken (or cached) as "nothing relevant". Only the
    ``NO_RELEVANT_INFORMATION`` marker means that.
    """


class ModelCallTimeoutError(TimeoutError):
    """A model call took longer than ``create_rlm_graph(timeout=...)``; retried like any timeout."""


class DepthLimitError(RLMError):
    """The document needs more nesting levels than ``max_depth`` allows.

    Attributes:
        levels: Nesting levels the document (or the part) needs.
        max_depth: The run's ``max_depth``.
    """

    def __init__(self, message: str, *, levels: int | None = None, max_depth: int | None = None) -> None:
        super().__init__(message)
        self.levels = levels
        self.max_depth = max_depth


def status_code(error: BaseException) -> int | None:
    """The HTTP status of a provider error (its own or its response's), if it has one."""
    for source in (error, getattr(error, "response", None)):
        code = getattr(source, "status_code", None)
        if isinstance(code, int):
            return code
    return None


def is_context_overflow(error: BaseException) -> bool:
    """Whether ``error`` says the prompt was longer than the model's window.

    Args:
        error: The exception a model call raised.

    Returns:
        True for LangChain's ``ContextOverflowError`` and providers' 400s that
        mention the context length.
    """
    if isinstance(error, ContextOverflowError):
        return True
    text = str(error).lower()
    return "context_length_exceeded" in text or "maximum context length" in text


def is_transient_error(error: BaseException) -> bool:
    """Retry rule for model calls: rate limits, 5xx, timeouts and lost connections.

    LangGraph's default ``retry_on`` also retries ``openai.BadRequestError``,
    which includes context-length overflows that fail the same way every time;
    this rule never retries a 4xx other than 408/409/425/429. An empty reply
    (:class:`EmptyReplyError`) is retried.

    Args:
        error: The exception a node raised.

    Returns:
        True when the same call may succeed if tried again.
    """
    if isinstance(error, EmptyReplyError):
        return True
    if is_context_overflow(error) or isinstance(error, RLMError):
        return False
    if isinstance(error, ModelError):
        return error.is_retryable
    status = status_code(error)
    if status is not None:
        # A failure on a 2xx means the body was unreadable (a cut or garbled reply).
        return status in _TRANSIENT_STATUS or 200 <= status < 300
    if isinstance(error, (TimeoutError, asyncio.TimeoutError, ConnectionError)):
        return True
    return any(cls.__name__ in _TRANSIENT_NAMES for cls in type(error).__mro__)


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error and the errors it was raised from (a client wraps the socket's own)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the server could not be connected to at all.

    Connection refused, an unknown host or any other failure to connect, as the
    socket, httpx or the openai client report it. A connection lost after it was
    made is not "unreachable": that server exists and may answer next time.

    Args:
        error: The exception a model call raised.

    Returns:
        True when no connection was made.
    """
    if isinstance(error, RLMError):
        return False  # such as a nested run that failed after its own retries
    return any(
        isinstance(cause, (ConnectionRefusedError, socket.gaierror)) or type(cause).__name__ == "ConnectError"
        for cause in _chain(error)
    )


def retry_reason(error: BaseException) -> str:
    """A few words on why a call failed, for a person watching the progress stream.

    Args:
        error: The exception a model call raised.

    Returns:
        Such as ``"connection refused"``, ``"HTTP 503"`` or ``"timed out"``; else
        the error's type and first line (:func:`describe_error`).
    """
    causes = list(_chain(error))
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        return "connection refused"
    if any(isinstance(cause, socket.gaierror) for cause in causes):
        return "host not found"
    if is_unreachable(error):
        return "cannot connect"
    status = status_code(error)
    if status is not None:
        return f"HTTP {status}"
    if any(isinstance(cause, (TimeoutError, asyncio.TimeoutError)) for cause in causes):
        return "timed out"
    if isinstance(error, EmptyReplyError):
        return "empty reply"
    return describe_error(error)


def retry_after_seconds(error: BaseException) -> float | None:
    """The wait a server asked for with ``Retry-After`` (or ``retry-after-ms``).

    Args:
        error: The exception a model call raised.

    Returns:
        Seconds to wait (capped at ``MAX_RETRY_AFTER``), or ``None`` if the server
        gave no hint.
    """
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    milliseconds = headers.get("retry-after-ms")
    value = headers.get("retry-after")
    try:
        if milliseconds is not None:
            seconds = float(milliseconds) / 1000
        elif value is not None:
            try:
                seconds = float(value)
            except ValueError:
                moment = email.utils.parsedate_to_datetime(value)
                seconds = (moment - datetime.datetime.now(moment.tzinfo)).total_seconds()
        else:
            return None
    except (TypeError, ValueError):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def describe_error(error: BaseException) -> str:
    """One line naming an error's type and message, for ``errors`` entries.

    Args:
        error: Any exception.

    Returns:
        ``"TypeName: message"``.
    """
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__

"""The per-call timeout: ``create_rlm_graph(timeout=...)`` bounds each model call, not a node.

A node-level ``TimeoutPolicy`` on ``process_chunk`` would also bound a part that
runs a nested graph over many calls, killing and re-running whole subtrees. The
limit is therefore applied around each model call (each attempt): a call that
takes too long raises :class:`rlm_graph.errors.ModelCallTimeoutError`, a
``TimeoutError`` that the node's retry policy retries like any other timeout.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import TimeoutPolicy

from rlm_graph.errors import ModelCallTimeoutError

__all__ = ["ainvoke_within", "call_timeout_seconds", "invoke_within"]


def _seconds(value: float | timedelta | None) -> float | None:
    return value.total_seconds() if isinstance(value, timedelta) else value


def call_timeout_seconds(timeout: float | TimeoutPolicy | None) -> float | None:
    """The per-call limit of ``create_rlm_graph(timeout=...)``, in seconds.

    A ``TimeoutPolicy`` gives its ``run_timeout``; its ``idle_timeout`` counts too,
    because a model call shows no progress until its reply arrives (it is not
    streamed), so a call idle that long is as good as stuck: the smaller one wins.

    Args:
        timeout: Seconds, a ``TimeoutPolicy``, or ``None`` for no limit.

    Returns:
        The limit in seconds, or ``None``.

    Raises:
        ValueError: If the limit is not a positive number.
    """
    if timeout is None:
        return None
    if isinstance(timeout, TimeoutPolicy):
        limits = [s for s in (_seconds(timeout.run_timeout), _seconds(timeout.idle_timeout)) if s is not None]
        seconds: Any = min(limits) if limits else None
        if seconds is None:
            return None
    else:
        seconds = timeout
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        msg = f"timeout must be a positive number of seconds or a TimeoutPolicy, got {timeout!r}"
        raise ValueError(msg)
    return float(seconds)


def _timed_out(seconds: float) -> ModelCallTimeoutError:
    msg = f"the model call took longer than timeout={seconds:g} seconds"
    return ModelCallTimeoutError(msg)


def invoke_within(
    model: BaseChatModel,
    messages: Sequence[BaseMessage],
    seconds: float | None,
    config: RunnableConfig | None = None,
) -> BaseMessage:
    """``model.invoke(messages)``, given up after ``seconds`` (sync).

    Python cannot stop a thread, so the call runs in a daemon worker thread and
    is abandoned when the time is up: its reply, if one ever comes, is dropped.
    Give the client its own timeout too (for example ``ChatOpenAI(timeout=...)``)
    so an abandoned request also ends.

    Args:
        model: The chat model.
        messages: The prompt.
        seconds: The limit, or ``None`` to call directly.
        config: The call's config (run name, metadata, tags).

    Returns:
        The reply.

    Raises:
        ModelCallTimeoutError: If no reply came in time.
    """
    if seconds is None:
        return model.invoke(list(messages), config)
    outcome: dict[str, Any] = {}
    finished = threading.Event()
    # The worker runs in a copy of this context, so callbacks and tracing see the node's run.
    context = contextvars.copy_context()

    def work() -> None:
        try:
            outcome["reply"] = context.run(model.invoke, list(messages), config)
        except BaseException as error:  # noqa: BLE001 - handed to the waiting caller
            outcome["error"] = error
        finally:
            finished.set()

    threading.Thread(target=work, name="rlm-model-call", daemon=True).start()
    if not finished.wait(seconds):
        raise _timed_out(seconds)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["reply"]


async def ainvoke_within(
    model: BaseChatModel,
    messages: Sequence[BaseMessage],
    seconds: float | None,
    config: RunnableConfig | None = None,
) -> BaseMessage:
    """``await model.ainvoke(messages)``, cancelled after ``seconds`` (async).

    Args:
        model: The chat model.
        messages: The prompt.
        seconds: The limit, or ``None`` for none.
        config: The call's config (run name, metadata, tags).

    Returns:
        The reply.

    Raises:
        ModelCallTimeoutError: If no reply came in time (the request is cancelled).
    """
    if seconds is None:
        return await model.ainvoke(list(messages), config)
    limit = asyncio.timeout(seconds)
    try:
        async with limit:
            return await model.ainvoke(list(messages), config)
    except TimeoutError:
        if limit.expired():
            raise _timed_out(seconds) from None
        raise

"""The model-call protocol: node logic yields requests, a driver runs them sync or async.

A node body is written once, as a generator (:data:`CallSteps`) that yields a batch
of :class:`ModelCall` (or one :class:`RunnableCall`, such as a nested graph) and receives the results.
:func:`drive` and :func:`adrive` run it: a batch one call after another, or in
parallel under ``asyncio.gather`` (``rlm_graph.nodes.entry`` builds a node's sync and
async entry points from one body). Every call is looked up in the reply cache,
booked against the run's budgets, held to a slot of the run's limiter (synthesis
first), bounded by the per-call timeout, and an empty reply fails it; a leaf's read that
``split`` started ahead (:mod:`rlm_graph.read_ahead`) is taken instead of sent again.
What a call cost is worked out in :mod:`rlm_graph.call_usage`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.cache.base import FullKey
from langgraph.constants import TAG_NOSTREAM

from rlm_graph.answer_stream import streaming_config
from rlm_graph.call_usage import cached_usage, reply_usage, was_cut
from rlm_graph.errors import RLMError, is_context_overflow, is_transient_error, retry_after_seconds, status_code
from rlm_graph.level import Level
from rlm_graph.settings import Settings
from rlm_graph.state import Usage
from rlm_graph.timeouts import ainvoke_within, invoke_within

__all__ = [
    "CallResult",
    "CallSteps",
    "ModelCall",
    "RunnableCall",
    "StructuredRepliesRefused",
    "adrive",
    "call_config",
    "drive",
    "read_ahead_key",
    "was_cut",
]


@dataclass(frozen=True, slots=True)
class ModelCall:
    """One prompt to send, with its exact token count."""

    messages: list[BaseMessage] | Callable[[], list[BaseMessage]]
    """The prompt, or a function that builds it: a read's prompt is built only once
    the call holds a slot, so queued reads do not each hold a copy of their text."""
    prompt_tokens: int
    urgent: bool = False
    """Synthesis calls are urgent: they unblock a level, so they skip the queue of reads,
    and they draw on the budget reserved for synthesis (``RunResources.spend``)."""
    large: bool = False
    """Send to ``Settings.large_model`` when there is one (synthesis, direct answers, escalations)."""
    name: str = "model call"
    """Run name tracers show, such as ``"read part 3/8"`` or ``"synthesize"``."""
    kind: str = "read"
    """What the call does (``"read"``, ``"escalate"``, ``"synthesize"``, ``"answer"``), in the run's metadata."""
    span: tuple[int, int] | None = None
    """The span of the root document the call covers, in the run's metadata."""
    streams: bool = False
    """The call gives the final answer: its tokens, cleaned, stream to the chat node's answer
    (:mod:`rlm_graph.answer_stream`)."""
    markers: int = 0
    """How many ``[Fn]`` markers the reply may cite (dropped from the streamed text)."""
    schema: Mapping[str, Any] | None = None
    """Ask for a structured reply: ``{"name", "schema"}`` of a JSON schema, sent as the call's
    ``response_format`` (:mod:`rlm_graph.replies` sets it); ``None``: a text reply."""
    corrective: bool = False
    """A corrective follow-up after a reply that could not be read (:func:`rlm_graph.replies.ask`)."""
    max_tokens: int | None = None
    """The reply's cap for this call when it differs from ``max_output_tokens`` (a corrective
    follow-up's prompt is longer than planned: its extra tokens come out of the reply's room)."""


class StructuredRepliesRefused(RLMError):
    """The model refused a JSON schema under ``reply_format="auto"``: the run falls back to text.

    Thrown into the node logic, where :func:`rlm_graph.replies.ask` asks the call again as text.
    """


@dataclass(frozen=True, slots=True)
class CallResult:
    """A model reply and what it cost."""

    text: str
    usage: Usage
    cut: bool = False
    """The reply stopped at its ``max_tokens`` (``finish_reason`` ``"length"``): it is not the whole
    reply, so :mod:`rlm_graph.replies` does not read it, and it is never cached."""


@dataclass(frozen=True, slots=True)
class RunnableCall:
    """One call of a runnable other than a budgeted model call, such as a nested graph on a part.

    It is not booked, cached or limited here: a nested graph books its own calls.
    """

    runnable: Runnable
    input: Any
    config: RunnableConfig | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of ``invoke``, such as a nested graph's ``context``."""


CallSteps = Generator[list[ModelCall] | RunnableCall | None, Any, Any]
"""Node logic written once for sync and async: it yields a batch of calls (and
receives their results, in order) or a nested call (and receives the graph's output),
so a driver can run a batch in parallel. A failed request is thrown into the generator.
It may also yield ``None`` between slices of long work (extracting a PDF page by page):
an async driver gives its event loop back there (see :mod:`rlm_graph.steps`)."""


def _messages(call: ModelCall) -> list[BaseMessage]:
    return call.messages() if callable(call.messages) else call.messages


def call_config(level: Level, call: ModelCall, role: str) -> RunnableConfig:
    """Config of one model call: a readable run name, metadata, and the ``nostream`` tag.

    No model call of the graph streams its raw tokens in ``stream_mode="messages"``:
    reads, escalations and intermediate syntheses are internal, and the final
    answer's raw tokens hold citation markers. Under a chat node
    (``create_document_node``) the final call's tokens are cleaned and streamed as
    the chat node's ``answer`` run instead (:mod:`rlm_graph.answer_stream`).

    Args:
        level: The level that makes the call.
        call: The call.
        role: ``"model"`` or ``"large_model"``.

    Returns:
        The config to invoke the model with.
    """
    metadata: dict[str, Any] = {"rlm_depth": level.depth, "rlm_kind": call.kind, "rlm_model": role}
    if call.span is not None:
        metadata["rlm_span"] = list(call.span)
    return {"tags": [TAG_NOSTREAM], "run_name": call.name, "metadata": metadata}


def _streaming(config: RunnableConfig, call: ModelCall) -> RunnableConfig:
    # The final answer's tokens reach the chat UI cleaned, through the chat node's answer run:
    # the call itself stays nostream (its raw tokens hold citation markers).
    if not call.streams:
        return config
    return streaming_config(config, call.markers, strip=call.kind == "synthesize", corrective=call.corrective)


def _retry_wait(error: BaseException) -> float | None:
    return retry_after_seconds(error) if is_transient_error(error) else None


def _cache_key(settings: Settings, call: ModelCall, role: str) -> FullKey | None:
    if settings.replies is None:
        return None
    identity = settings.identity_of(role)
    if call.schema is not None:
        # A structured reply is JSON, a text reply is not: the formats never share an entry.
        identity += "\x00json_schema:" + json.dumps(call.schema, sort_keys=True, default=str)
    # Built, hashed and dropped before the call waits for a slot, so queued reads
    # still hold no copy of their text.
    return settings.replies.key(identity, _messages(call))


def _prepare(level: Level, call: ModelCall) -> tuple[Settings, str, FullKey | None]:
    settings = level.settings
    role = settings.role_of(call.large)
    return settings, role, _cache_key(settings, call, role)


def read_ahead_key(call: ModelCall, role: str) -> tuple[object, ...] | None:
    """What identifies a leaf's reading call, so one started ahead (rlm_graph.read_ahead) is found.

    Args:
        call: A call.
        role: The model role it goes to.

    Returns:
        Its span, role and prompt size for a reading call; ``None`` for any other call.
    """
    if call.kind != "read" or call.span is None:
        return None
    return (call.span, role, call.prompt_tokens, call.schema is not None)


def _taken_ahead(level: Level, call: ModelCall) -> Any:
    key = read_ahead_key(call, level.settings.role_of(call.large))
    return None if key is None else level.resources.pending_reads.take(key)


def _model(level: Level, call: ModelCall, role: str) -> Runnable:
    """The runnable a call is sent to: the role's model, capped at the reply budget, maybe with a schema."""
    settings = level.settings
    _not_refused(level, call)
    if call.schema is None:
        return settings.capped_model(role, call.max_tokens)
    return settings.structured_model(role, call.schema, call.max_tokens)


def _refused(level: Level, call: ModelCall, error: Exception) -> Exception:
    """A schema refused under ``reply_format="auto"`` switches the run to text; any other error is itself."""
    if call.schema is None or is_context_overflow(error) or is_transient_error(error):
        return error
    if not isinstance(error, NotImplementedError) and status_code(error) not in (400, 422):
        return error
    chosen = getattr(level.context, "reply_format", None) or level.settings.reply_format
    if chosen != "auto":
        return error
    level.resources.structured_refused = True
    msg = f"the model refused structured replies, so this run reads text replies: {error}"
    return StructuredRepliesRefused(msg)


def _raw(reply: Any) -> BaseMessage:
    # with_structured_output(include_raw=True) gives {"raw", "parsed", "parsing_error"}: the reply
    # is read from the raw message here, strictly (rlm_graph.replies), with its usage.
    return reply["raw"] if isinstance(reply, dict) else reply


def _not_refused(level: Level, call: ModelCall) -> None:
    if call.schema is not None and level.resources.structured_refused:
        # A call built before the model refused schemas (read ahead, or waiting for a slot): not sent.
        msg = "the model refused structured replies earlier in this run"
        raise StructuredRepliesRefused(msg)


def _book(level: Level, call: ModelCall) -> None:
    _not_refused(level, call)
    # Only calls actually made are booked: a cache hit spends no budget.
    level.resources.spend(call.prompt_tokens, synthesis=call.urgent)


def call_model(level: Level, call: ModelCall) -> CallResult:
    """Send one prompt, holding a slot of the run's limiter (sync).

    Args:
        level: The level that makes the call.
        call: The prompt.

    Returns:
        The reply and its usage; a reply from the cache counts no call and no tokens,
        only ``cached_calls``.
    """
    if (ahead := _taken_ahead(level, call)) is not None:
        # Started while split was planning, booked and cached then: its reply, or its failure.
        return ahead.result()
    settings, role, key = _prepare(level, call)
    if (hit := settings.replies.get(key) if settings.replies and key else None) is not None:
        return CallResult(hit, cached_usage(settings, role))
    _book(level, call)
    try:
        with level.resources.thread_slot():
            messages = settings.wire_messages(_messages(call), role)
            config = _streaming(call_config(level, call, role), call)
            reply = _raw(invoke_within(_model(level, call, role), messages, settings.call_timeout, config))
    except Exception as error:
        # Honour the server's Retry-After before LangGraph's retry policy takes over;
        # the slot is already released, so other calls go on meanwhile.
        if (wait := _retry_wait(error)) is not None:
            time.sleep(wait)
        if (refused := _refused(level, call, error)) is not error:
            raise refused from error
        raise
    result = CallResult(*reply_usage(settings, call.prompt_tokens, reply, role), cut=was_cut(reply))
    if settings.replies is not None and key is not None and not result.cut:
        settings.replies.put(key, result.text)
    return result


async def acall_model(level: Level, call: ModelCall) -> CallResult:
    """Async :func:`call_model`; synthesis calls take a slot before queued reads."""
    if (ahead := _taken_ahead(level, call)) is not None:
        return await (ahead if isinstance(ahead, asyncio.Future) else asyncio.wrap_future(ahead))
    settings, role, key = _prepare(level, call)
    if (hit := await settings.replies.aget(key) if settings.replies and key else None) is not None:
        return CallResult(hit, cached_usage(settings, role))
    _book(level, call)
    try:
        priority = (0, -level.depth) if call.urgent else (1, 0)
        async with level.resources.async_slot(priority):
            messages = settings.wire_messages(_messages(call), role)
            config = _streaming(call_config(level, call, role), call)
            model = _model(level, call, role)
            reply = _raw(await ainvoke_within(model, messages, settings.call_timeout, config))
    except Exception as error:
        if (wait := _retry_wait(error)) is not None:
            await asyncio.sleep(wait)
        if (refused := _refused(level, call, error)) is not error:
            raise refused from error
        raise
    result = CallResult(*reply_usage(settings, call.prompt_tokens, reply, role), cut=was_cut(reply))
    if settings.replies is not None and key is not None and not result.cut:
        await settings.replies.aput(key, result.text)
    return result


def _needed(level: Level | None) -> Level:
    if level is None:
        msg = "a model call needs the level that makes it"
        raise TypeError(msg)
    return level


class _Stepper:
    """Walks :data:`CallSteps`: hands each reply (or failure) back and keeps the next request."""

    def __init__(self, steps: CallSteps) -> None:
        self.steps = steps
        self.done = False
        self.value: Any = None
        self.request: list[ModelCall] | RunnableCall | None = self._advance(lambda: next(steps))

    def _advance(self, move: Callable[[], Any]) -> Any:
        try:
            return move()
        except StopIteration as finished:
            self.done, self.value = True, finished.value
            return None

    def resume(self, reply: Any, error: Exception | None) -> None:
        """Send the reply in, or throw the failure in: the node logic decides what a failure means."""
        if error is not None:
            self.request = self._advance(lambda: self.steps.throw(error))
        else:
            self.request = self._advance(lambda: self.steps.send(reply))


def _run(level: Level | None, request: Any) -> tuple[Any, Exception | None]:
    if request is None:
        return None, None  # a pause: nothing to wait for in a sync run
    try:
        if isinstance(request, RunnableCall):
            return request.runnable.invoke(request.input, request.config, **request.kwargs), None
        return [call_model(_needed(level), call) for call in request], None
    except Exception as error:  # noqa: BLE001 - thrown into the node logic
        return None, error


async def _arun(level: Level | None, request: Any) -> tuple[Any, Exception | None]:
    if request is None:
        await asyncio.sleep(0)  # a pause: the loop's other coroutines run
        return None, None
    try:
        if isinstance(request, RunnableCall):
            return await request.runnable.ainvoke(request.input, request.config, **request.kwargs), None
        return list(await asyncio.gather(*(acall_model(_needed(level), call) for call in request))), None
    except Exception as error:  # noqa: BLE001 - thrown into the node logic
        return None, error


def drive(level: Level | None, steps: CallSteps) -> Any:
    """Run node logic written as :data:`CallSteps`, one call after another.

    Args:
        level: The level whose model calls these are (``None`` when the logic yields only runnable calls).
        steps: The node logic.

    Returns:
        What the logic returns.
    """
    stepper = _Stepper(steps)
    while not stepper.done:
        stepper.resume(*_run(level, stepper.request))
    return stepper.value


async def adrive(level: Level | None, steps: CallSteps) -> Any:
    """Async :func:`drive`: the calls of a batch run in parallel (``asyncio.gather``)."""
    stepper = _Stepper(steps)
    while not stepper.done:
        stepper.resume(*await _arun(level, stepper.request))
    return stepper.value

"""Replies read strictly, never guessed: one mechanism for every parser of model output.

A parser either returns what the model said or an :class:`Unreadable` saying what was
wrong. :func:`ask` sends a call (as :data:`rlm_graph.calls.CallSteps`), parses its reply
and, when the reply cannot be read, asks once more with a short corrective follow-up
(what was wrong, and the expected form). A second reply that cannot be read gives an
*unparsed* :class:`Reply`: the caller counts it (``Reply.usage`` holds
``unparsed_replies: 1``) and reports it (``Reply.error(start, end)`` is the ``errors``
entry of kind ``"unparsed"``, with the first 200 characters of the reply), and the
answer's coverage note says so (:mod:`rlm_graph.coverage`). Nothing is ever read into a
reply that it does not say.

Usage, inside node logic written as ``CallSteps``::

    form = ReplyForm("count", parse_count, "one whole number, digits only", schema=COUNT_SCHEMA,
                     parse_json=lambda data: data["count"])
    reply = yield from ask(level, call, form)
    if reply.unparsed:
        errors.append(reply.error(start, end))
    usage = merge_usage(usage, reply.usage)

A form with a ``schema`` is asked for structured replies (a JSON schema sent as the
call's ``response_format``) when the run's reply format is structured
(:func:`reply_format`): then the reply is a JSON object, decoded here and handed to
``parse_json``. A model that refuses structured replies under ``reply_format="auto"``
(an HTTP 400) switches the whole run to the text format, once: the refused call is
asked again as text, and no part fails for it. A server that ignores the schema and
answers plain text switches the run to text too, and its reply is read as text.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from rlm_graph.calls import CallResult, ModelCall, StructuredRepliesRefused
from rlm_graph.state import PartError, Usage, merge_usage
from rlm_graph.tokens import TokenCounter

__all__ = [
    "REPLY_PREVIEW_CHARS",
    "AskingLevel",
    "AskingResources",
    "AskingSettings",
    "Reply",
    "ReplyForm",
    "Unreadable",
    "ask",
    "ask_each",
    "correction_message",
    "reply_format",
    "supports_structured",
    "with_schema",
]

T = TypeVar("T")

REPLY_PREVIEW_CHARS = 200
"""Characters of an unreadable reply kept in its ``errors`` entry."""
_ECHO_CHARS = 300
# The corrective follow-up repeats only the start of the bad reply: enough for the model to
# see what it wrote, little enough that the retry still fits the window planned for the call.


@runtime_checkable
class AskingSettings(Protocol):
    """What :func:`ask` reads of a level's settings."""

    @property
    def reply_format(self) -> str: ...  # "auto", "structured" or "text"
    @property
    def model(self) -> Any: ...
    @property
    def counter(self) -> TokenCounter: ...
    @property
    def max_output_tokens(self) -> int | None: ...


@runtime_checkable
class AskingResources(Protocol):
    """What :func:`ask` reads and sets of a run's shared resources."""

    structured_refused: bool

    def allow_unplanned(self, input_tokens: int) -> bool: ...


@runtime_checkable
class AskingLevel(Protocol):
    """What :func:`ask` needs of the level that makes its calls.

    :class:`rlm_graph.level.Level` is one; the chat node's rewrite, made outside any run,
    has its own (:class:`rlm_graph.rewrite.RewriteCalls`). Both are checked against this
    (``isinstance``) in the tests, so a member one of them lacks fails there, not in a run.
    """

    @property
    def context(self) -> Any: ...
    @property
    def settings(self) -> AskingSettings: ...
    @property
    def resources(self) -> AskingResources: ...


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A parser's verdict on a reply it could not read."""

    problem: str
    """What was wrong, in a short clause the model can act on ("the reply is empty")."""


@dataclass(frozen=True)
class ReplyForm(Generic[T]):
    """What a reply must look like, and how it is read: text, and optionally JSON.

    Args:
        name: Short name of the form, used as the JSON schema's name (``"reading"``, ``"count"``).
        parse: Reads a text reply: returns the value, or :class:`Unreadable`.
        expected: The expected text form, said to the model when its reply could not be read.
        schema: JSON schema of a structured reply (``None``: this form is text only).
        parse_json: Reads a structured reply, already decoded and checked against ``schema``'s
            required keys and basic types; returns the value, or :class:`Unreadable`.
    """

    name: str
    parse: Callable[[str], T | Unreadable]
    expected: str
    schema: Mapping[str, Any] | None = None
    parse_json: Callable[[dict[str, Any]], T | Unreadable] | None = None

    @property
    def structured(self) -> bool:
        """Whether this form can be asked for as a JSON schema."""
        return self.schema is not None and self.parse_json is not None

    @property
    def spec(self) -> dict[str, Any]:
        """``{"name", "schema"}``: what a structured call carries (:attr:`rlm_graph.calls.ModelCall.schema`)."""
        return {"name": self.name, "schema": self.schema}

    def read(self, text: str, structured: bool) -> T | Unreadable:
        """Read one reply in the given format."""
        if not structured:
            return self.parse(text)
        data = _decode(text, self.schema or {})
        if isinstance(data, Unreadable):
            return data
        return self.parse_json(data)  # type: ignore[misc]

    def expected_form(self, structured: bool) -> str:
        """The expected form, as the corrective message says it."""
        if structured:
            return f"one JSON object that matches the {self.name} schema (no text around it)"
        return self.expected


@dataclass(frozen=True)
class Reply(Generic[T]):
    """What :func:`ask` got: the value the model gave, or the fact that it could not be read."""

    value: T | None
    """The parsed value; ``None`` when the reply was unparsed."""
    text: str
    """The reply that was read (the second one after a corrective retry, the last one when unparsed)."""
    cost: Usage
    """Usage of every call made for it (a corrective retry included)."""
    problem: str | None = None
    """Why the last reply could not be read (``None``: it was read)."""
    first_reply: str = ""
    """The first reply, as the model wrote it."""
    retried: bool = False
    """Whether a corrective follow-up was sent."""
    structured: bool = False
    """Whether the reply that was read is a structured (JSON) reply."""
    side: Reply[Any] | None = None
    """Another call's unparsed reply made for the same value, whose loss did not cost it (a relay
    escalation that could not be read: the small model's reading stands)."""

    @property
    def unparsed(self) -> bool:
        """Whether the reply could not be read, even after the corrective retry."""
        return self.problem is not None

    @property
    def usage(self) -> Usage:
        """``cost``, plus ``unparsed_replies`` for this reply and its ``side`` when they could not be read."""
        unparsed = int(self.unparsed) + int(self.side is not None and self.side.unparsed)
        return merge_usage(self.cost, {"unparsed_replies": unparsed}) if unparsed else self.cost

    def errors(self, start: int, end: int, what: str = "the model's reply") -> list[PartError]:
        """The ``errors`` entries of this reply and its ``side`` that could not be read (see :meth:`error`)."""
        replies = [self, self.side] if self.side is not None else [self]
        return [reply.error(start, end, what) for reply in replies if reply.unparsed]

    @property
    def result(self) -> CallResult:
        """The reply as a :class:`rlm_graph.calls.CallResult` (its usage without the unparsed count)."""
        return CallResult(self.text, self.cost)

    def error(self, start: int, end: int, what: str = "the model's reply") -> PartError:
        """The ``errors`` entry of an unparsed reply about characters ``start``-``end``.

        Args:
            start: Start of the span the reply was about.
            end: End of that span.
            what: What the reply was (``"the reading of characters 0-900"``), for the message.

        Returns:
            ``{"start", "end", "error", "kind": "unparsed", "reply"}``.
        """
        return {
            "start": start,
            "end": end,
            "error": f"{what} could not be read, even after a corrective retry: {self.problem}",
            "kind": "unparsed",
            "reply": self.text[:REPLY_PREVIEW_CHARS],
        }


def supports_structured(model: object) -> bool:
    """Whether a chat model can be asked for replies that follow a JSON schema.

    LangChain's model profile says so (``structured_output``); ``ChatOpenAI`` (and
    ``AzureChatOpenAI``) send a schema as ``response_format`` with ``json_schema``, which
    OpenAI, Azure, vLLM, llama.cpp's server and Ollama's OpenAI endpoint accept.

    Args:
        model: The chat model.

    Returns:
        True when structured replies can be asked for.
    """
    profile = getattr(model, "profile", None)
    if isinstance(profile, Mapping) and profile.get("structured_output") is not None:
        return bool(profile.get("structured_output"))
    return type(model).__module__.startswith("langchain_openai")


def reply_format(level: AskingLevel) -> Literal["structured", "text"]:
    """The reply format of a level's calls now: the run's choice, resolved against the model.

    ``RLMContext(reply_format=...)`` overrides the graph's option; ``"auto"`` is structured
    when the reading model supports it (:func:`supports_structured`) and the model has not
    refused a schema earlier in the run (then the rest of the run is text).

    Args:
        level: The :class:`rlm_graph.level.Level` making the calls.

    Returns:
        ``"structured"`` or ``"text"``.
    """
    chosen = getattr(level.context, "reply_format", None) or level.settings.reply_format
    if chosen == "text":
        return "text"
    if chosen == "structured":
        return "structured"
    if level.resources.structured_refused or not supports_structured(level.settings.model):
        return "text"
    return "structured"


def correction_message(problem: str, expected: str) -> str:
    """The corrective follow-up sent after a reply that could not be read.

    Args:
        problem: What was wrong.
        expected: The expected form.

    Returns:
        One short instruction.
    """
    return (
        f"Your reply above could not be read: {problem}. Reply again to the same task, "
        f"in this form only: {expected}."
    )


def _corrected(
    level: AskingLevel, call: ModelCall, reply: str, problem: str, expected: str, count: Callable
) -> ModelCall:
    """The original prompt, the start of the bad reply, and the correction.

    The plan made the original prompt fit the window beside a reply of ``max_output_tokens``;
    the follow-up's tokens come out of that reply room (sent as a smaller ``max_tokens``), so
    the corrected call fits the window too.
    """
    echo = reply if len(reply) <= _ECHO_CHARS else reply[:_ECHO_CHARS] + " [...]"
    follow_up = [AIMessage(echo), HumanMessage(correction_message(problem, expected))]
    original = call.messages
    extra = count(follow_up)

    def messages() -> list:
        base = original() if callable(original) else original
        return [*base, *follow_up]

    return dataclasses.replace(
        call,
        messages=messages,
        prompt_tokens=call.prompt_tokens + extra,
        name=f"{call.name} (corrected)",
        corrective=True,
        max_tokens=_reply_room(level, call, extra),
    )


_LEAST_REPLY_TOKENS = 16


def ask(
    level: AskingLevel,
    call: ModelCall | Callable[[bool], ModelCall],
    form: ReplyForm[T],
    *,
    count_tokens: Callable[[list], int] | None = None,
) -> Generator[list[ModelCall], Any, Reply[T]]:
    """Send one call, read its reply under ``form``; on a reply that cannot be read, correct once.

    Written as :data:`rlm_graph.calls.CallSteps` (``reply = yield from ask(...)``), so it runs
    under the sync and async drivers alike. The corrective retry is a call the plan did not
    count: it is made only while the run's budget allows it (like a relay escalation);
    otherwise the first reply is reported unparsed.

    Args:
        level: The :class:`rlm_graph.level.Level` that makes the call.
        call: The call, or a function that builds it for a format (``True``: structured), for
            prompts whose instructions differ between the formats.
        form: How the reply is read.
        count_tokens: Counts the tokens of the follow-up messages; the graph's counter by default.

    Yields:
        The batches of calls to make (see :data:`rlm_graph.calls.CallSteps`).

    Returns:
        The :class:`Reply`: its ``value``, or ``unparsed`` with the problem.
    """
    (reply,) = yield from ask_each(level, [call], form, count_tokens=count_tokens)
    return reply


def ask_each(
    level: AskingLevel,
    calls: Sequence[ModelCall | Callable[[bool], ModelCall]],
    form: ReplyForm[T],
    *,
    count_tokens: Callable[[list], int] | None = None,
) -> Generator[list[ModelCall], Any, list[Reply[T]]]:
    """:func:`ask` for several calls at once: one batch of calls, then one batch of corrections.

    The calls run in parallel under an async driver (one ``asyncio.gather`` per batch).

    Args:
        level: The :class:`rlm_graph.level.Level` that makes the calls.
        calls: The calls (or functions that build them for a format).
        form: How every reply is read.
        count_tokens: Counts the tokens of the follow-up messages; the graph's counter by default.

    Yields:
        The batches of calls to make.

    Returns:
        One :class:`Reply` per call, in order.
    """
    if not calls:
        return []
    count = count_tokens or level.settings.counter.count_messages
    structured = form.structured and reply_format(level) == "structured"
    requests = [_build(level, call, form, structured, count) for call in calls]
    try:
        firsts: list[CallResult] = yield requests
    except StructuredRepliesRefused:
        # The model refused the schema (auto): the run is text from now on; ask these calls again as text.
        structured = False
        requests = [_build(level, call, form, structured, count) for call in calls]
        firsts = yield requests
    if structured and _schema_ignored(level, firsts):
        # The server answered plain text to a schema (it ignores response_format): under auto the
        # run is text from now on, and these replies are read as the text they are.
        level.resources.structured_refused = True
        structured = False
        requests = [_build(level, call, form, structured, count) for call in calls]
    values = [_read(form, first, structured) for first in firsts]
    replies: list[Reply[T] | None] = [
        None if isinstance(value, Unreadable) else Reply(value, first.text, first.usage, first_reply=first.text,
                                                         structured=structured)
        for value, first in zip(values, firsts, strict=True)
    ]
    retries: list[tuple[int, ModelCall]] = []
    for index, (value, first) in enumerate(zip(values, firsts, strict=True)):
        if not isinstance(value, Unreadable):
            continue
        retry = _corrected(level, requests[index], first.text, value.problem, form.expected_form(structured), count)
        if level.resources.allow_unplanned(retry.prompt_tokens):
            retries.append((index, retry))
        else:
            replies[index] = Reply(None, first.text, first.usage, value.problem, first.text, structured=structured)
    if retries:
        seconds: list[CallResult] = yield [retry for _, retry in retries]
        for (index, _), second in zip(retries, seconds, strict=True):
            first = firsts[index]
            usage = merge_usage(first.usage, second.usage)
            again = _read(form, second, structured)
            problem = again.problem if isinstance(again, Unreadable) else None
            value = None if isinstance(again, Unreadable) else again
            replies[index] = Reply(value, second.text, usage, problem, first.text, retried=True, structured=structured)
    return [reply for reply in replies if reply is not None]


_CUT = "it was cut off at the reply's token limit, so it is not the whole reply: write a shorter one"


def _read(form: ReplyForm[T], result: CallResult, structured: bool) -> T | Unreadable:
    # A reply stopped by max_tokens may have lost its end (facts, quotes, the COMPLETE line): not read.
    return Unreadable(_CUT) if result.cut else form.read(result.text, structured)


def _schema_ignored(level: AskingLevel, results: Sequence[CallResult]) -> bool:
    """Whether a server that was sent a schema under ``auto`` answered plain text instead."""
    chosen = getattr(level.context, "reply_format", None) or level.settings.reply_format
    if chosen != "auto":
        return False
    return any(not result.cut and not result.text.lstrip().startswith(("{", "`")) for result in results)


def _build(
    level: AskingLevel,
    call: ModelCall | Callable[[bool], ModelCall],
    form: ReplyForm[Any],
    structured: bool,
    count: Callable[[list], int],
) -> ModelCall:
    built = call(structured) if callable(call) and not isinstance(call, ModelCall) else call
    return with_schema(level, built, form, count) if structured and form.schema is not None else built


def _reply_room(level: AskingLevel, call: ModelCall, extra: int) -> int | None:
    """The reply's cap once ``extra`` prompt tokens took part of its room (``None``: no cap is known)."""
    budget = call.max_tokens or level.settings.max_output_tokens
    return None if budget is None else max(budget - extra, _LEAST_REPLY_TOKENS)


def with_schema(
    level: AskingLevel, call: ModelCall, form: ReplyForm[Any], count: Callable[[list], int] | None = None
) -> ModelCall:
    """``call`` asking for a structured reply in ``form``'s schema, as :func:`ask` sends it.

    The schema is sent with the prompt, and billed with it, but a plan counts the prompt
    alone: its tokens come out of the reply's room (a smaller ``max_tokens``), so the call
    still fits the window the plan assumed.

    Args:
        level: The :class:`rlm_graph.level.Level` that makes the call.
        call: The call, its prompt worded for a structured reply.
        form: A form with a schema.
        count: Counts the tokens of messages; the graph's counter by default.

    Returns:
        The call with the schema, its prompt tokens counting it and its ``max_tokens`` reduced by as much.
    """
    count = count or level.settings.counter.count_messages
    extra = count([SystemMessage(json.dumps(form.spec))])
    return dataclasses.replace(
        call,
        schema=form.spec,
        prompt_tokens=call.prompt_tokens + extra,
        max_tokens=_reply_room(level, call, extra),
    )


_JSON_TYPES: Mapping[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "number": (int, float),
}


def _type_ok(value: Any, kind: Any) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number" and isinstance(value, bool):
        return False
    types = _JSON_TYPES.get(kind) if isinstance(kind, str) else None
    return types is None or isinstance(value, types)


def _check(value: Any, schema: Mapping[str, Any], path: str) -> str | None:
    """The first way ``value`` breaks ``schema`` (types, required keys, enums, array items), or ``None``."""
    if not _type_ok(value, schema.get("type")):
        return f"{path} is not of type {schema.get('type')}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{path} is {value!r}, not one of {list(schema['enum'])}"
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for key in schema.get("required") or ():
            if key not in value:
                return f"{path} has no {key!r}"
        for key, sub in properties.items():
            if key in value and (problem := _check(value[key], sub, f"{path}.{key}")):
                return problem
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            if problem := _check(item, schema["items"], f"{path}[{index}]"):
                return problem
    return None


def _decode(text: str, schema: Mapping[str, Any]) -> dict[str, Any] | Unreadable:
    """A structured reply's JSON object, checked against its schema (types, required keys, enums)."""
    stripped = text.strip()
    if stripped.startswith("```"):
        # Some servers wrap even a schema-constrained reply in a Markdown fence.
        stripped = stripped.strip("`").removeprefix("json").strip()
    try:
        data = json.loads(stripped)
    except ValueError:
        return Unreadable("the reply is not a JSON object (it may have been cut off)")
    if not isinstance(data, dict):
        return Unreadable("the reply is JSON but not an object")
    if problem := _check(data, schema, "the reply"):
        return Unreadable(problem)
    return data

"""Rule 1: a reply is read as what it says, or reported as unreadable; never guessed.

The shared mechanism (:func:`rlm_graph.replies.ask`) is driven here by hand, one reply at
a time, so each test states exactly what the model said and what the caller got.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from rlm_graph.calls import CallResult, ModelCall, StructuredRepliesRefused
from rlm_graph.replies import (
    AskingLevel,
    AskingResources,
    AskingSettings,
    Reply,
    ReplyForm,
    Unreadable,
    ask,
    correction_message,
)
from rlm_graph.tokens import TiktokenCounter


def parse_count(text: str) -> int | Unreadable:
    stripped = text.strip()
    return int(stripped) if stripped.isdigit() else Unreadable("the reply is not one whole number")


COUNT = ReplyForm(
    "count",
    parse_count,
    "one whole number, digits only",
    schema={
        "type": "object",
        "properties": {"count": {"type": "integer"}},
        "required": ["count"],
        "additionalProperties": False,
    },
    parse_json=lambda data: data["count"],
)


def level(reply_format: str = "text", *, budget: bool = True, structured_model: bool = True) -> Any:
    profile = {"structured_output": structured_model}
    return SimpleNamespace(
        context=None,
        settings=SimpleNamespace(
            counter=TiktokenCounter(exact=True),
            reply_format=reply_format,
            max_output_tokens=256,
            model=SimpleNamespace(profile=profile),
        ),
        resources=SimpleNamespace(allow_unplanned=lambda tokens: budget, structured_refused=False),
    )


def run(steps: Any, replies: list[str | BaseException]) -> tuple[Reply, list[ModelCall]]:
    """Drive ``ask`` by hand: each yielded batch of one call gets the next scripted reply."""
    sent: list[ModelCall] = []
    answer: Any = None
    throw: BaseException | None = None
    scripted = iter(replies)
    while True:
        try:
            batch = steps.throw(throw) if throw is not None else steps.send(answer)
        except StopIteration as done:
            return done.value, sent
        (call,) = batch
        sent.append(call)
        reply = next(scripted)
        throw, answer = (reply, None) if isinstance(reply, BaseException) else (None, [_result(reply)])


def _result(text: str) -> CallResult:
    return CallResult(text, {"llm_calls": 1, "input_tokens": 100, "output_tokens": 5})


CALL = ModelCall([HumanMessage("How many chapters mention the horse?")], 20, name="count part 1/3")


def test_a_readable_reply_is_returned_as_said() -> None:
    reply, sent = run(ask(level(), CALL, COUNT), ["4"])
    assert reply.value == 4
    assert not reply.unparsed
    assert not reply.retried
    assert len(sent) == 1
    assert "unparsed_replies" not in reply.usage


def test_an_unreadable_reply_is_corrected_once_then_read() -> None:
    reply, sent = run(ask(level(), CALL, COUNT), ["Chapter 12 has 5.", "5"])
    assert reply.value == 5
    assert reply.retried
    assert not reply.unparsed
    assert reply.first_reply == "Chapter 12 has 5."
    # The follow-up repeats the prompt, shows the model its reply and says what was wrong and the form.
    follow_up = sent[1].messages() if callable(sent[1].messages) else sent[1].messages
    assert follow_up[0].content == "How many chapters mention the horse?"
    assert isinstance(follow_up[1], AIMessage)
    assert follow_up[1].content == "Chapter 12 has 5."
    assert follow_up[2].content == correction_message(
        "the reply is not one whole number", "one whole number, digits only"
    )
    assert sent[1].corrective
    extra = sent[1].prompt_tokens - CALL.prompt_tokens
    assert extra > 0
    # The follow-up's tokens come out of the reply's room, so the corrected call fits the window too.
    assert sent[1].max_tokens == 256 - extra
    assert reply.usage["llm_calls"] == 2


def test_a_second_unreadable_reply_is_unparsed_never_guessed() -> None:
    reply, sent = run(ask(level(), CALL, COUNT), ["Chapter 12 has 5.", "It has five."])
    assert reply.value is None
    assert reply.unparsed
    assert len(sent) == 2
    assert reply.usage["unparsed_replies"] == 1
    assert reply.usage["llm_calls"] == 2
    error = reply.error(100, 900, "the count of characters 100-900")
    assert error == {
        "start": 100,
        "end": 900,
        "error": "the count of characters 100-900 could not be read, even after a corrective retry: "
        "the reply is not one whole number",
        "kind": "unparsed",
        "reply": "It has five.",
    }


def test_the_error_keeps_the_first_200_characters_of_the_reply() -> None:
    long = "x" * 500
    reply, _ = run(ask(level(), CALL, COUNT), [long, long])
    assert reply.error(0, 1)["reply"] == "x" * 200


def test_no_retry_when_the_budget_has_no_room() -> None:
    reply, sent = run(ask(level(budget=False), CALL, COUNT), ["about five"])
    assert reply.unparsed
    assert len(sent) == 1
    assert reply.usage["unparsed_replies"] == 1


def test_a_long_bad_reply_is_echoed_only_in_part() -> None:
    _, sent = run(ask(level(), CALL, COUNT), ["y" * 5000, "3"])
    follow_up = sent[1].messages()
    assert len(follow_up[1].content) < 400


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ('{"count": "five"}', "the reply.count is not of type integer"),
        ('{"total": 5}', "the reply has no 'count'"),
        ('{"count": 5', "the reply is not a JSON object (it may have been cut off)"),
        ("[5]", "the reply is JSON but not an object"),
    ],
)
def test_structured_replies_are_checked_against_their_schema(reply: str, problem: str) -> None:
    result, sent = run(ask(level("structured"), CALL, COUNT), [reply, reply])
    assert sent[0].schema == {"name": "count", "schema": COUNT.schema}
    assert result.unparsed
    assert result.problem == problem
    assert "JSON object that matches the count schema" in sent[1].messages()[-1].content


def test_structured_reply_is_read() -> None:
    result, _ = run(ask(level("structured"), CALL, COUNT), ['{"count": 7}'])
    assert result.value == 7
    assert result.structured


def test_auto_uses_structured_only_when_the_model_supports_it() -> None:
    _, sent = run(ask(level("auto"), CALL, COUNT), ['{"count": 7}'])
    assert sent[0].schema is not None
    _, sent = run(ask(level("auto", structured_model=False), CALL, COUNT), ["7"])
    assert sent[0].schema is None


def test_a_refused_schema_is_asked_again_as_text() -> None:
    result, sent = run(ask(level("auto"), CALL, COUNT), [StructuredRepliesRefused("400"), "7"])
    assert result.value == 7
    assert not result.structured
    assert sent[0].schema is not None
    assert sent[1].schema is None


def test_a_form_may_build_its_call_per_format() -> None:
    built: list[bool] = []

    def make(structured: bool) -> ModelCall:
        built.append(structured)
        return CALL

    run(ask(level("structured"), make, COUNT), ['{"count": 1}'])
    run(ask(level("text"), make, COUNT), ["1"])
    assert built == [True, False]


def test_every_level_that_asks_has_what_ask_reads() -> None:
    # ask() is given the analysis graph's Level and the chat node's RewriteCalls: both must
    # carry every member it reads (two were once missing from RewriteCalls after a merge).
    from rlm_graph import create_rlm_graph
    from rlm_graph.estimate import settings_of
    from rlm_graph.level import Level
    from rlm_graph.rewrite import RewriteCalls
    from rlm_graph.runs import RunResources
    from tests.fakes import PerfectReader

    settings = settings_of(create_rlm_graph(PerfectReader(), cache=False))
    levels = [
        Level(settings=settings, depth=0, offset=0, run_key="test", context=None, resources=RunResources(2)),
        RewriteCalls(PerfectReader(), counter=settings.counter),
        level(),
    ]
    for asking in levels:
        assert isinstance(asking, AskingLevel)
        assert isinstance(asking.settings, AskingSettings)
        assert isinstance(asking.resources, AskingResources)
    incomplete = level()
    del incomplete.settings.counter
    assert not isinstance(incomplete.settings, AskingSettings)

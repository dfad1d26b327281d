"""Structured replies end to end over HTTP, through ChatOpenAI and the local OpenAI-compatible server.

The server answers ``response_format`` with ``json_schema`` as OpenAI does (the reply is a
JSON string in ``content``), or refuses it with a 400. Both reply formats must give the same
answers; ``auto`` must fall back to text once, for the rest of the run, without failing a part.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_openai import ChatOpenAI

from rlm_graph import RLMContext, create_rlm_graph
from rlm_graph.prompts import NO_ANSWER_MESSAGE, NO_RELEVANT_INFORMATION
from tests.fakes import plant_needles
from tests.openai_server import ChatServer, default_structured_reply

QUESTION = "List every NEEDLE code and its value."


def chat_model(server: ChatServer, **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(model="local-reader", base_url=server.base_url, api_key="not-needed", max_retries=0, **kwargs)


def schema_name(request: Any) -> str | None:
    return (request.response_format or {}).get("json_schema", {}).get("name")


@pytest.mark.parametrize("use_async", [False, True])
@pytest.mark.parametrize("reply_format", ["text", "structured", "auto"])
async def test_both_formats_give_the_same_answer_over_http(
    frankenstein: str, reply_format: str, use_async: bool
) -> None:
    text, facts, _ = plant_needles(frankenstein[:120_000], 6)
    with ChatServer(window=8192) as server:
        graph = create_rlm_graph(chat_model(server), context_window=8192, reply_format=reply_format)
        payload = {"document": text, "question": QUESTION}
        out = await graph.ainvoke(payload) if use_async else graph.invoke(payload)
    assert all(fact in out["answer"] for fact in facts)
    assert out["errors"] == []
    assert out["usage"]["unparsed_replies"] == 0
    reads = [request for request in server.requests if request.kind == "read"]
    assert len(reads) >= 4
    # ChatOpenAI supports json_schema, so auto is structured.
    expected = None if reply_format == "text" else "reading"
    assert all(schema_name(request) == expected for request in reads)
    if expected:
        assert all(request.response_format["json_schema"]["strict"] for request in reads)
    # The final synthesis streams to users as text, in either format.
    assert all(request.response_format is None for request in server.requests if request.kind == "synthesis")
    # The reply budget the plan reserved is sent with every call; a structured read's schema takes
    # its tokens out of it (the plan counted the prompt alone).
    assert {request.max_tokens for request in server.requests if request.response_format is None} == {1024}
    structured_caps = {request.max_tokens for request in server.requests if request.response_format is not None}
    assert len(structured_caps) <= 1
    assert all(900 < cap < 1024 for cap in structured_caps)
    assert all(request.outcome == "200" for request in server.requests)


@pytest.mark.parametrize("use_async", [False, True])
async def test_auto_falls_back_to_text_once_when_the_server_refuses_schemas(
    frankenstein: str, use_async: bool
) -> None:
    text, facts, _ = plant_needles(frankenstein[:120_000], 6)
    with ChatServer(window=8192, reject_response_format=True) as server:
        graph = create_rlm_graph(chat_model(server), context_window=8192, max_concurrency=1)
        payload = {"document": text, "question": QUESTION}
        out = await graph.ainvoke(payload) if use_async else graph.invoke(payload)
        second = await graph.ainvoke(payload) if use_async else graph.invoke(payload)
    assert all(fact in out["answer"] for fact in facts)
    assert out["errors"] == []
    assert out["usage"]["failed_parts"] == 0
    # One refusal, then text for the rest of that run; a new run tries once more.
    assert server.statuses.count(400) == 2
    refused = [request for request in server.requests if request.outcome == "400"]
    assert all(schema_name(request) == "reading" for request in refused)
    first_run = server.requests[: len(server.requests) // 2]
    assert [request.response_format is not None for request in first_run].count(True) == 1
    assert second["answer"] == out["answer"]


def test_structured_asked_for_by_name_fails_the_parts_a_server_refuses(frankenstein: str) -> None:
    text, _, _ = plant_needles(frankenstein[:60_000], 3)
    with ChatServer(window=8192, reject_response_format=True) as server:
        graph = create_rlm_graph(chat_model(server), context_window=8192, reply_format="structured")
        with pytest.raises(Exception, match="response_format is not supported"):
            graph.invoke({"document": text, "question": QUESTION})
    # A 400 is not retried, and no text call is made behind the user's explicit choice.
    assert all(request.response_format is not None for request in server.requests)


def test_the_reply_cache_tells_the_formats_apart(frankenstein: str) -> None:
    text, facts, _ = plant_needles(frankenstein[:60_000], 3)
    with ChatServer(window=8192) as server:
        graph = create_rlm_graph(chat_model(server), context_window=8192)
        payload = {"document": text, "question": QUESTION}
        structured = graph.invoke(payload, context=RLMContext(reply_format="structured"))
        calls = len(server.requests)
        as_text = graph.invoke(payload, context=RLMContext(reply_format="text"))
        text_calls = len(server.requests) - calls
        again = graph.invoke(payload, context=RLMContext(reply_format="text"))
    # A text run never meets a structured run's cached JSON (nor the other way round)...
    assert text_calls > 0
    assert all(fact in as_text["answer"] for fact in facts)
    assert all(fact in structured["answer"] for fact in facts)
    # ...and a run in the same format reuses its own.
    assert again["usage"]["llm_calls"] == 0
    assert again["answer"] == as_text["answer"]


def test_focused_synthesis_is_structured_too(frankenstein: str) -> None:
    text, (fact,), _ = plant_needles(frankenstein[:200_000], 1)
    code = fact.split(" is ")[0]
    with ChatServer(window=8192) as server:
        graph = create_rlm_graph(chat_model(server), context_window=8192, mode="focused", reply_format="structured")
        out = graph.invoke({"document": text, "question": f"What is {code}?"})
    assert out["answer"].startswith(fact)
    assert out["usage"]["parts_read"] < out["usage"]["parts_total"]
    syntheses = [request for request in server.requests if request.kind == "synthesis"]
    assert syntheses
    assert all(schema_name(request) == "focused_synthesis" for request in syntheses)


def test_a_structured_reply_that_says_nothing_in_prose_is_reported(frankenstein: str) -> None:
    """A server whose JSON readings say "no information" with relevant: true, as small models do."""

    def deviating(name: str, facts: list[str], schema: dict, label: str = "") -> dict | str:
        if name == "reading" and not facts:
            return {"relevant": True, "findings": "There is no information about that in this part.", "quotes": []}
        return default_structured_reply(name, facts, schema, label)

    text, _, _ = plant_needles(frankenstein[:60_000], 0)
    with ChatServer(window=8192, structured_reply=deviating) as server:
        graph = create_rlm_graph(chat_model(server), context_window=8192)
        out = graph.invoke({"document": text, "question": QUESTION})
    reads = [request for request in server.requests if request.kind == "read"]
    parts = len({request.span for request in reads})
    # Each part was asked twice (the second time with the correction), then reported.
    assert len(reads) == 2 * parts
    assert out["usage"]["unparsed_replies"] == parts
    assert not out["answer"].startswith(NO_ANSWER_MESSAGE)
    assert "could not be read, even when asked again" in out["answer"]
    assert {error["kind"] for error in out["errors"]} == {"unparsed"}
    assert json.loads(out["errors"][0]["reply"])["relevant"] is True


async def test_structured_follow_up_reads_mostly_from_the_provider_cache(frankenstein: str) -> None:
    text, facts, _ = plant_needles(frankenstein[:100_000], 6)
    with ChatServer(window=16384) as server:
        graph = create_rlm_graph(chat_model(server), context_window=16384, part_tokens=2048, reply_format="structured")
        await graph.ainvoke({"document": text, "question": "List every NEEDLE code."})
        first = len(server.requests)
        second = await graph.ainvoke({"document": text, "question": "Which NEEDLE codes are there, in order?"})
    assert all(fact in second["answer"] for fact in facts)
    reads = [request for request in server.requests[first:] if request.kind == "read"]
    assert len(reads) >= 8
    read_input = sum(request.usage["prompt_tokens"] for request in reads)
    read_cached = sum(request.usage["prompt_tokens_details"]["cached_tokens"] for request in reads)
    # The schema and the instructions come first, then the part: the question's change is in the tail.
    assert read_cached >= 0.8 * read_input


def test_auto_reads_text_from_a_server_that_ignores_schemas(frankenstein: str) -> None:
    """Some OpenAI-compatible servers accept response_format and answer plain text anyway."""

    def ignores(name: str, facts: list[str], schema: dict, label: str = "") -> str:
        if not facts:
            return "NO_RELEVANT_INFORMATION"
        return "; ".join(facts) + "".join(f'\nQUOTE: "{fact}."' for fact in facts)

    text, facts, _ = plant_needles(frankenstein[:120_000], 6)
    with ChatServer(window=8192, structured_reply=ignores) as server:
        graph = create_rlm_graph(chat_model(server), context_window=8192, max_concurrency=1, read_ahead=False)
        out = graph.invoke({"document": text, "question": QUESTION})
    assert all(fact in out["answer"] for fact in facts)
    assert out["errors"] == []
    # The first plain-text answer to a schema switched the run to text: no schema after it, no retry.
    reads = [request for request in server.requests if request.kind == "read"]
    assert [request.response_format is not None for request in reads].count(True) == 1
    assert len(reads) == len({request.span for request in reads})


@pytest.mark.parametrize("reply_format", ["text", "structured"])
async def test_a_reasoning_models_thoughts_in_content_are_not_read_over_http(
    frankenstein: str, reply_format: str
) -> None:
    # A reasoning model behind a server that leaves <think> in content (no reasoning parser):
    # every reply, JSON ones too, starts with thoughts that name a code the book lacks.
    text, facts, _ = plant_needles(frankenstein[:120_000], 4)
    thoughts = f"The question wants codes. NEEDLE-9999 is DECOY? No. Else {NO_RELEVANT_INFORMATION}."
    with ChatServer(window=8192, reasoning=thoughts) as server:
        graph = create_rlm_graph(chat_model(server), context_window=8192, reply_format=reply_format)
        out = await graph.ainvoke({"document": text, "question": QUESTION})
    assert all(fact in out["answer"] for fact in facts)
    assert "DECOY" not in out["answer"]
    assert "think" not in out["answer"]
    assert out["errors"] == []
    assert out["usage"]["unparsed_replies"] == 0
    assert len([request for request in server.requests if request.kind == "read"]) >= 4

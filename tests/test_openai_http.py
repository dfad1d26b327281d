"""Real HTTP: ChatOpenAI (the openai client) against a local OpenAI-compatible server."""

import pytest
from langchain_openai import ChatOpenAI
from langgraph.types import RetryPolicy

from rlm_graph import create_rlm_graph, is_transient_error
from tests.fakes import plant_needles
from tests.openai_server import ChatServer

QUESTION = "List every NEEDLE code."


def chat_model(server: ChatServer, **kwargs: object) -> ChatOpenAI:
    return ChatOpenAI(model="local-reader", base_url=server.base_url, api_key="not-needed", max_retries=0, **kwargs)


@pytest.mark.parametrize("streaming", [False, True])
async def test_long_document_over_http(frankenstein: str, streaming: bool) -> None:
    text, facts, _ = plant_needles(frankenstein, 20)
    with ChatServer(window=8192) as server:
        model = chat_model(server, streaming=streaming, stream_usage=True)
        graph = create_rlm_graph(model, context_window=8192)
        out = await graph.ainvoke({"document": text, "question": QUESTION})
    assert all(fact in out["answer"] for fact in facts)
    assert out["errors"] == []
    assert server.statuses.count(400) == 0
    assert len(server.requests) == out["usage"]["llm_calls"]
    # Usage comes from the server's reports, not from our own count.
    assert out["usage"]["input_tokens"] == sum(u["prompt_tokens"] for u in server.usage)
    assert out["usage"]["output_tokens"] == sum(u["completion_tokens"] for u in server.usage)
    assert all(request.outcome == "200" for request in server.requests)


async def test_rate_limits_are_retried_over_http(frankenstein: str) -> None:
    text, facts, _ = plant_needles(frankenstein[:120_000], 5)
    policy = RetryPolicy(initial_interval=0.01, max_interval=0.05, max_attempts=4, retry_on=is_transient_error)
    with ChatServer(window=8192, rate_limit_first=3) as server:
        graph = create_rlm_graph(chat_model(server), context_window=8192, retry_policy=policy)
        out = await graph.ainvoke({"document": text, "question": QUESTION})
    assert server.statuses.count(429) == 3
    assert out["errors"] == []
    assert all(fact in out["answer"] for fact in facts)


async def test_server_context_error_is_not_retried(frankenstein: str) -> None:
    # The server's window is smaller than the one we claim, so every read overflows there.
    text, _, _ = plant_needles(frankenstein[:120_000], 5)
    with ChatServer(window=2000) as server:
        graph = create_rlm_graph(chat_model(server), context_window=8192)
        with pytest.raises(Exception, match="context length"):
            await graph.ainvoke({"document": text, "question": QUESTION})
    assert server.statuses.count(400) == len(server.requests)
    parts = len(server.requests)
    assert parts <= 6  # one request per part, none repeated

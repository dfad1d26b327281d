"""Provider prompt caching: prompts share a prefix across questions, cached input is counted and priced."""

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_openai import ChatOpenAI

from rlm_graph import create_rlm_graph
from rlm_graph.call_usage import model_usage
from rlm_graph.estimate import settings_of
from rlm_graph.navigate.aggregate import AGGREGATE_INSTRUCTIONS
from rlm_graph.navigate.reading import AGGREGATE_PROMPT
from rlm_graph.prompts import (
    CACHE_CONTROL,
    DIRECT_ANSWER_PROMPT,
    READ_PART_PROMPT,
    SYNTHESIZE_PROMPT,
    SYSTEM_PROMPT,
    add_cache_markers,
    build_messages,
    caches_automatically,
)
from tests.fakes import PerfectReader, plant_needles
from tests.openai_server import ChatServer

FIRST = "List every NEEDLE code."
FOLLOW_UP = "Which NEEDLE codes does the document mention, in order?"


def _shared_prefix(a: str, b: str) -> int:
    length = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        length += 1
    return length


@pytest.mark.parametrize(
    ("template", "values", "data_end"),
    [
        (READ_PART_PROMPT, {"text": "PART TEXT", "start": 0, "end": 9}, "</document_part>"),
        (DIRECT_ANSWER_PROMPT, {"text": "WHOLE TEXT"}, "</document>"),
        (SYNTHESIZE_PROMPT, {"findings": "FINDINGS", "final_instruction": "Write it."}, "</findings>"),
        (
            AGGREGATE_PROMPT,
            {"text": "PART TEXT", "start": 0, "end": 9, "instruction": AGGREGATE_INSTRUCTIONS["count"]},
            "</document_part>",
        ),
    ],
)
def test_prompts_put_the_data_before_the_question_and_the_task_last(
    template: str, values: dict, data_end: str
) -> None:
    first = build_messages(SYSTEM_PROMPT, template, question=FIRST, **values)[-1].text
    second = build_messages(SYSTEM_PROMPT, template, question=FOLLOW_UP, **values)[-1].text
    # Two questions about the same data share everything up to the end of the data.
    assert _shared_prefix(first, second) >= first.index(data_end) + len(data_end)
    assert first.index(data_end) < first.index(FIRST)
    # The task is restated after the data and the question, so it is the last instruction.
    assert first.rfind("Task:") > first.index(FIRST) > first.index(data_end)


def test_cache_markers_end_the_static_prefix_and_keep_the_text() -> None:
    messages = build_messages(SYSTEM_PROMPT, READ_PART_PROMPT, question=FIRST, text="PART", start=0, end=4)
    marked = add_cache_markers(messages)
    head, tail = marked[-1].content
    assert head["cache_control"] == CACHE_CONTROL
    assert head["text"].endswith("</document_part>\n")
    assert FIRST in tail["text"]
    assert FIRST not in head["text"]
    assert marked[-1].text == messages[-1].text
    assert isinstance(messages[-1].content, str)  # the input is not modified
    # A prompt with no data block has no static prefix to mark.
    plain = [HumanMessage("What is this?")]
    assert add_cache_markers(plain)[0].content == "What is this?"


def test_markers_are_left_out_for_providers_that_cache_by_themselves() -> None:
    openai = ChatOpenAI(model="gpt-4o-mini", api_key="sk-test")
    graph = create_rlm_graph(openai, context_window=8192, prompt_cache_markers=True)
    messages = build_messages(SYSTEM_PROMPT, READ_PART_PROMPT, question=FIRST, text="PART", start=0, end=4)
    assert caches_automatically(openai)
    assert settings_of(graph).wire_messages(messages, "model") == messages
    other = ChatOpenAI(model="anthropic/claude", api_key="sk-test", base_url="http://127.0.0.1:9/v1")
    assert not caches_automatically(other)
    assert not caches_automatically(PerfectReader())
    with pytest.raises(TypeError, match="prompt_cache_markers"):
        create_rlm_graph(PerfectReader(), prompt_cache_markers="yes")


def test_cached_input_is_priced_at_the_cached_price() -> None:
    entry = model_usage({"model": (2.0, 8.0, 0.5)}, "model", 10_000, 1_000, cached_input_tokens=8_000)
    assert entry["cached_input_tokens"] == 8_000
    assert entry["cost"] == pytest.approx((2_000 * 2.0 + 8_000 * 0.5 + 1_000 * 8.0) / 1e6)
    # Two prices: cached input costs the input price.
    assert model_usage({"model": (2.0, 8.0)}, "model", 10_000, 1_000, 8_000)["cost"] == pytest.approx(0.028)


class _CachingReader(PerfectReader):
    """Reports every prompt as half cached, the way LangChain models put it in usage_metadata."""

    def _answer(self, messages):  # type: ignore[no-untyped-def]
        result = super()._answer(messages)
        message = result.generations[0].message
        tokens = self.get_num_tokens_from_messages(messages)
        message.usage_metadata = {
            "input_tokens": tokens,
            "output_tokens": 5,
            "total_tokens": tokens + 5,
            "input_token_details": {"cache_read": tokens // 2},
        }
        assert isinstance(message, AIMessage)
        return result


def test_usage_counts_cached_input_per_model(frankenstein: str) -> None:
    text, facts, _ = plant_needles(frankenstein[:60_000], 4)
    graph = create_rlm_graph(_CachingReader(), prices={"model": (1.0, 4.0, 0.25)}, cache=False)
    out = graph.invoke({"document": text, "question": FIRST})
    assert all(fact in out["answer"] for fact in facts)
    usage = out["usage"]
    by_model = usage["by_model"]["model"]
    assert usage["cached_input_tokens"] == by_model["cached_input_tokens"] > 0
    assert usage["cached_input_tokens"] == pytest.approx(usage["input_tokens"] / 2, rel=0.01)
    fresh = usage["input_tokens"] - usage["cached_input_tokens"]
    expected = (fresh * 1.0 + usage["cached_input_tokens"] * 0.25 + usage["output_tokens"] * 4.0) / 1e6
    assert usage["cost"] == pytest.approx(expected)


def _chat_model(server: ChatServer) -> ChatOpenAI:
    return ChatOpenAI(model="local-reader", base_url=server.base_url, api_key="not-needed", max_retries=0)


@pytest.mark.parametrize("markers", [False, True])
async def test_a_follow_up_question_reads_mostly_from_the_provider_cache(frankenstein: str, markers: bool) -> None:
    text, facts, _ = plant_needles(frankenstein[:100_000], 6)
    prices = {"model": (2.0, 8.0, 0.5)}
    with ChatServer(window=16384) as server:
        # part_tokens below what the window allows: the plan (and so every part's prompt
        # prefix) is the same for both questions.
        graph = create_rlm_graph(
            _chat_model(server), context_window=16384, part_tokens=2048, prices=prices, prompt_cache_markers=markers
        )
        first = await graph.ainvoke({"document": text, "question": FIRST})
        first_requests = len(server.requests)
        second = await graph.ainvoke({"document": text, "question": FOLLOW_UP})
    assert all(fact in first["answer"] for fact in facts)
    assert all(fact in second["answer"] for fact in facts)
    reads = [request for request in server.requests[first_requests:] if request.kind == "read"]
    assert len(reads) >= 8
    read_input = sum(request.usage["prompt_tokens"] for request in reads)
    read_cached = sum(request.usage["prompt_tokens_details"]["cached_tokens"] for request in reads)
    assert read_cached >= 0.8 * read_input
    # The usage we report is the server's, and the follow-up's input is billed mostly at the cached price.
    assert second["usage"]["cached_input_tokens"] == sum(
        usage["prompt_tokens_details"]["cached_tokens"] for usage in server.usage[first_requests:]
    )
    assert second["usage"]["by_model"]["model"]["cached_input_tokens"] == second["usage"]["cached_input_tokens"]
    assert first["usage"].get("cached_input_tokens", 0) < 0.1 * first["usage"]["input_tokens"]
    assert second["usage"]["cost"] < 0.5 * first["usage"]["cost"]
    # Markers reach the server through ChatOpenAI as content blocks without breaking a request.
    assert all(request.outcome == "200" for request in server.requests)
    assert all(request.cache_markers == (1 if markers else 0) for request in reads)


def test_markers_do_not_change_reply_cache_keys(frankenstein: str) -> None:
    from rlm_graph.cache import BoundedInMemoryCache

    text, facts, _ = plant_needles(frankenstein[:60_000], 4)
    shared = BoundedInMemoryCache()
    unmarked = create_rlm_graph(PerfectReader(), cache=shared)
    first = unmarked.invoke({"document": text, "question": FIRST})
    model = PerfectReader()
    marked = create_rlm_graph(model, cache=shared, prompt_cache_markers=True)
    again = marked.invoke({"document": text, "question": FIRST})
    assert all(fact in again["answer"] for fact in facts)
    assert again["answer"] == first["answer"]
    assert again["usage"]["llm_calls"] == 0
    assert model.prompts == []

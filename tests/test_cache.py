"""The reply cache: keys that name the model and endpoint, honest usage, bounded memory, free repeats."""

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_openai import AzureChatOpenAI, ChatOpenAI
from langgraph.cache.memory import InMemoryCache
from langgraph.cache.sqlite import SqliteCache
from langgraph.graph import END, START, StateGraph

from rlm_graph import BoundedInMemoryCache, DocumentChatState, create_document_node, create_rlm_graph, runs
from rlm_graph.cache import REPLY_NAMESPACE
from rlm_graph.model_identity import model_identity
from rlm_graph.prompts import NO_RELEVANT_INFORMATION
from tests.fakes import PerfectReader, plant_needles
from tests.openai_server import ChatServer

QUESTION = "List every NEEDLE code."
SHORT = "A short memo. NEEDLE-0042 is LOCAL. Nothing else."


# --- item 8: a cache key names the model, its endpoint and every reply-changing setting ---


def test_servers_with_the_same_model_name_do_not_share_answers(tmp_path) -> None:
    path = str(tmp_path / "cache.sqlite")
    with ChatServer(label="8B says: ") as small, ChatServer(label="70B says: ") as large:
        answers = {}
        for server in (small, large):
            model = ChatOpenAI(model="llama3", base_url=server.base_url, api_key="x", max_retries=0)
            graph = create_rlm_graph(model, context_window=8192, cache=SqliteCache(path=path))
            answers[server.label] = graph.invoke({"document": SHORT, "question": QUESTION})["answer"]
        assert answers["8B says: "].startswith("8B says: NEEDLE-0042 is LOCAL")
        assert answers["70B says: "].startswith("70B says: NEEDLE-0042 is LOCAL")
        assert len(small.requests) == 1
        assert len(large.requests) == 1


def test_a_repeat_on_the_same_server_is_served_from_a_shared_cache(tmp_path) -> None:
    path = str(tmp_path / "cache.sqlite")
    with ChatServer(label="A: ") as server:
        outputs = []
        for _ in range(2):
            model = ChatOpenAI(model="llama3", base_url=server.base_url, api_key="x", max_retries=0)
            graph = create_rlm_graph(model, context_window=8192, cache=SqliteCache(path=path))
            outputs.append(graph.invoke({"document": SHORT, "question": QUESTION}))
        assert len(server.requests) == 1
    assert outputs[1]["answer"] == outputs[0]["answer"]
    assert outputs[1]["usage"]["cached_calls"] == 1


def test_no_answer_message_is_applied_after_the_cache(tmp_path) -> None:
    path = str(tmp_path / "cache.sqlite")
    model = PerfectReader()
    english = create_rlm_graph(model, cache=SqliteCache(path=path))
    korean = create_rlm_graph(model, cache=SqliteCache(path=path), no_answer_message="문서에 답이 없습니다.")
    question = {"document": "A short memo about lunch.", "question": "What is the launch code?"}
    first = english.invoke(question)["answer"]
    second = korean.invoke(question)["answer"]
    assert "does not" in first
    assert second == "문서에 답이 없습니다."
    # The raw reply was shared (same model, same prompt): only the wording differs.
    assert len(model.prompts) == 1


def _openai(**overrides: object) -> ChatOpenAI:
    options: dict[str, object] = {"model": "llama3", "base_url": "http://a.example/v1", "api_key": "sk-one"}
    options.update(overrides)
    return ChatOpenAI(**options)


@pytest.mark.parametrize(
    "overrides",
    [
        {"base_url": "http://b.example/v1"},
        {"model": "llama3:70b"},
        {"organization": "org-2"},
        {"default_headers": {"x-model-route": "large"}},
        {"default_query": {"deployment": "eu"}},
        {"temperature": 0.7},
        {"max_tokens": 100},
        {"stop": ["\n\n"]},
        {"top_p": 0.5},
        {"seed": 7},
        {"model_kwargs": {"user": "tenant-2"}},
        {"extra_body": {"repetition_penalty": 1.1}},
        {"reasoning_effort": "high"},
        {"api_key": "sk-two"},
    ],
)
def test_every_reply_changing_setting_is_in_the_identity(overrides: dict) -> None:
    assert model_identity(_openai(**overrides)) != model_identity(_openai())


@pytest.mark.parametrize("overrides", [{"max_retries": 9}, {"timeout": 5.0}, {"streaming": True}, {"tags": ["x"]}])
def test_settings_that_do_not_change_replies_keep_the_identity(overrides: dict) -> None:
    assert model_identity(_openai(**overrides)) == model_identity(_openai())


def test_azure_deployments_and_endpoints_are_told_apart() -> None:
    def azure(**overrides: str) -> AzureChatOpenAI:
        options = {
            "azure_endpoint": "https://one.openai.azure.com",
            "azure_deployment": "gpt-4o-mini",
            "api_version": "2024-06-01",
            "api_key": "azure-secret-key",
        }
        options.update(overrides)
        return AzureChatOpenAI(**options)

    base = model_identity(azure())
    assert model_identity(azure(azure_deployment="gpt-4o")) != base
    assert model_identity(azure(azure_endpoint="https://two.openai.azure.com")) != base
    assert model_identity(azure(api_version="2025-01-01")) != base
    assert "azure-secret-key" not in base


def test_credentials_never_appear_in_clear() -> None:
    model = _openai(
        api_key="sk-live-abcdef123456",
        default_headers={"Authorization": "Bearer hdr-secret-987", "api-key": "azure-hdr-555", "x-route": "eu"},
        model_kwargs={"extra_headers": {"X-Api-Key": "kw-secret-321"}},
    )
    identity = model_identity(model)
    for secret in ("sk-live-abcdef123456", "hdr-secret-987", "azure-hdr-555", "kw-secret-321"):
        assert secret not in identity
    assert "x-route" in identity  # a routing header is kept as it is
    # Hashed, not dropped: another key or header value is another identity.
    other = _openai(
        api_key="sk-live-abcdef123456",
        default_headers={"Authorization": "Bearer other", "api-key": "azure-hdr-555", "x-route": "eu"},
        model_kwargs={"extra_headers": {"X-Api-Key": "kw-secret-321"}},
    )
    assert model_identity(other) != identity


def test_the_client_endpoint_counts_when_the_field_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_BASE", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://from-env-one.example/v1")
    one = model_identity(ChatOpenAI(model="llama3", api_key="x"))
    monkeypatch.setenv("OPENAI_BASE_URL", "http://from-env-two.example/v1")
    two = model_identity(ChatOpenAI(model="llama3", api_key="x"))
    assert one != two


# --- item 9: usage counts the calls made; cache hits are counted apart ---


async def test_cache_hits_report_no_calls_or_cost(frankenstein: str) -> None:
    text, facts, _ = plant_needles(frankenstein[:120_000], 3)
    model = PerfectReader(window=4096, reserved_output=512)
    graph = create_rlm_graph(model, max_output_tokens=512, prices={"model": (1.0, 2.0)})
    first = await graph.ainvoke({"document": text, "question": QUESTION})
    calls = len(model.prompts)
    second = await graph.ainvoke({"document": text, "question": QUESTION})
    assert len(model.prompts) == calls
    assert second["answer"] == first["answer"]
    assert all(fact in second["answer"] for fact in facts)
    assert first["usage"]["llm_calls"] == calls
    assert first["usage"]["cached_calls"] == 0
    assert second["usage"]["llm_calls"] == 0
    assert second["usage"]["input_tokens"] == 0
    assert second["usage"]["cost"] == 0.0
    assert second["usage"]["cached_calls"] == calls
    assert second["usage"]["by_model"]["model"]["cached_calls"] == calls
    reads = sum(1 for prompt in model.prompts if '<finding id="' not in prompt)
    assert second["usage"]["cached_parts"] == reads


def test_a_cached_direct_answer_reports_usage_and_frees_its_run() -> None:
    model = PerfectReader()
    graph = create_rlm_graph(model)
    for attempt in (1, 2):
        before = len(runs._registry)
        chunks = list(graph.stream({"document": SHORT, "question": QUESTION}, stream_mode=["custom", "values"]))
        events = [chunk for mode, chunk in chunks if mode == "custom"]
        answer = [chunk for mode, chunk in chunks if mode == "values"][-1]["answer"]
        usage_events = [e for e in events if e.get("type") == "usage" and e.get("depth") == 0]
        assert "NEEDLE-0042 is LOCAL" in answer
        assert len(usage_events) == 1
        assert usage_events[0]["llm_calls"] == (1 if attempt == 1 else 0)
        assert usage_events[0].get("cached_calls", 0) == (0 if attempt == 1 else 1)
        assert [e["status"] for e in events if e.get("stage") == "direct"] == ["started", "done"]
        assert len(runs._registry) == before
    assert len(model.prompts) == 1


class Condenser(PerfectReader):
    """Rewrites every follow-up to the same standalone question (so the document graph repeats)."""

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        if "<follow_up>" in messages[-1].text:
            with self._lock:
                self._prompts.append(messages[-1].text)
            return ChatResult(generations=[ChatGeneration(message=AIMessage(QUESTION))])
        return super()._answer(messages)


async def test_chat_usage_sums_only_calls_made(frankenstein: str) -> None:
    text, facts, _ = plant_needles(frankenstein[:100_000], 3)
    model = Condenser()
    builder = StateGraph(DocumentChatState)
    builder.add_node("analyse", create_document_node(model))
    builder.add_edge(START, "analyse")
    builder.add_edge("analyse", END)
    app = builder.compile()
    state = await app.ainvoke({"messages": [HumanMessage(QUESTION)], "document": text})
    calls = len(model.prompts)
    state["messages"].append(HumanMessage("And again?"))
    state = await app.ainvoke(state)
    # The second turn made one call (the condensing) and read everything else from the cache.
    assert len(model.prompts) == calls + 1
    assert all(fact in state["messages"][-1].text for fact in facts)
    assert state["rlm_usage"]["llm_calls"] == len(model.prompts)
    assert state["messages"][-1].response_metadata["rlm_usage"]["llm_calls"] == 1


# --- item 10: the default cache is bounded by size and age ---


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_bounded_cache_drops_expired_entries_without_reading_them() -> None:
    clock = Clock()
    cache = BoundedInMemoryCache(clock=clock)
    cache.set({(("ns",), f"old-{i}"): (f"value {i}", 60) for i in range(100)})
    assert len(cache) == 100
    clock.now += 61
    # Writing other keys purges the expired ones, though none of them is read again.
    cache.set({(("ns",), "new"): ("fresh", 60)})
    assert len(cache) == 1
    assert cache.get([(("ns",), "old-3"), (("ns",), "new")]) == {(("ns",), "new"): "fresh"}


def test_bounded_cache_evicts_least_recently_used_entries() -> None:
    cache = BoundedInMemoryCache(max_entries=3)
    for key in "abc":
        cache.set({(("ns",), key): (key.upper(), None)})
    assert cache.get([(("ns",), "a")]) == {(("ns",), "a"): "A"}  # "a" is now the most recent
    cache.set({(("ns",), "d"): ("D", None)})
    assert set(cache.get([(("ns",), k) for k in "abcd"])) == {(("ns",), "a"), (("ns",), "c"), (("ns",), "d")}


def test_bounded_cache_is_bounded_in_bytes() -> None:
    cache = BoundedInMemoryCache(max_bytes=10_000)
    for i in range(100):
        cache.set({(("ns",), str(i)): ("x" * 1_000, None)})
    assert cache.size_bytes <= 10_000
    assert 5 <= len(cache) <= 10
    assert cache.get([(("ns",), "99")])  # the newest is kept


def test_bounded_cache_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        BoundedInMemoryCache(max_entries=0)


def test_rewriting_a_key_keeps_its_new_expiry() -> None:
    clock = Clock()
    cache = BoundedInMemoryCache(clock=clock)
    cache.set({(("ns",), "k"): ("first", 10)})
    clock.now += 5
    cache.set({(("ns",), "k"): ("second", 10)})
    clock.now += 7  # past the first expiry, before the second
    assert cache.get([(("ns",), "k")]) == {(("ns",), "k"): "second"}
    cache.clear([("ns",)])
    assert len(cache) == 0


def test_default_graph_cache_is_bounded_and_graph_scoped(frankenstein: str) -> None:
    graph = create_rlm_graph(PerfectReader(window=4096, reserved_output=512), max_output_tokens=512, cache_ttl=60)
    assert isinstance(graph.cache, BoundedInMemoryCache)
    cache = graph.cache
    cache.max_entries = 25
    for seed in range(6):
        text, _, _ = plant_needles(frankenstein[:40_000], 2, seed=seed)
        graph.invoke({"document": text, "question": QUESTION})
        assert len(cache) <= 25
    assert all(namespace == REPLY_NAMESPACE for namespace in cache._cache)


def test_any_langgraph_cache_still_works(frankenstein: str) -> None:
    model = PerfectReader()
    graph = create_rlm_graph(model, cache=InMemoryCache())
    first = graph.invoke({"document": frankenstein[:60_000], "question": QUESTION})
    calls = len(model.prompts)
    second = graph.invoke({"document": frankenstein[:60_000], "question": QUESTION})
    assert second["answer"] == first["answer"]
    assert len(model.prompts) == calls


def test_bad_cache_options_fail_at_build_time() -> None:
    with pytest.raises(TypeError, match="cache must be a LangGraph BaseCache"):
        create_rlm_graph(PerfectReader(), cache={})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cache_ttl"):
        create_rlm_graph(PerfectReader(), cache_ttl=0)


# --- item 11: the same question on the same document again makes no model call ---


@pytest.mark.parametrize("use_async", [False, True])
async def test_repeat_run_makes_no_model_call(frankenstein: str, use_async: bool) -> None:
    text, facts, _ = plant_needles(frankenstein, 6)
    model = PerfectReader()
    graph = create_rlm_graph(model)
    payload = {"document": text, "question": QUESTION}
    first = await graph.ainvoke(payload) if use_async else graph.invoke(payload)
    calls = len(model.prompts)
    second = await graph.ainvoke(payload) if use_async else graph.invoke(payload)
    assert len(model.prompts) == calls
    assert second["answer"] == first["answer"]
    assert second["citations"] == first["citations"]
    assert all(fact in second["answer"] for fact in facts)
    assert first["usage"]["max_depth"] == 1  # the repeat covers nested levels too


class EmptyOnce(PerfectReader):
    """Replies empty to its first prompt, then like the perfect reader."""

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        if not self._prompts:
            with self._lock:
                self._prompts.append("\n".join(m.text for m in messages))
            return ChatResult(generations=[ChatGeneration(message=AIMessage(""))])
        return super()._answer(messages)


def test_empty_replies_are_not_cached() -> None:
    model = EmptyOnce()
    graph = create_rlm_graph(model)
    graph.invoke({"document": SHORT, "question": QUESTION})
    second = graph.invoke({"document": SHORT, "question": QUESTION})
    assert len(model.prompts) == 2
    assert "NEEDLE-0042 is LOCAL" in second["answer"]
    third = graph.invoke({"document": SHORT, "question": QUESTION})
    assert len(model.prompts) == 2
    assert third["answer"] == second["answer"]
    assert NO_RELEVANT_INFORMATION not in third["answer"]


class BrokenCache(InMemoryCache):
    """A backend whose every read and write fails (a locked or full disk, a dropped connection)."""

    def get(self, keys):  # type: ignore[no-untyped-def]
        raise OSError("database is locked")

    def set(self, pairs):  # type: ignore[no-untyped-def]
        raise OSError("disk full")


@pytest.mark.parametrize("use_async", [False, True])
async def test_a_broken_cache_backend_does_not_fail_the_run(use_async: bool, caplog) -> None:
    model = PerfectReader()
    graph = create_rlm_graph(model, cache=BrokenCache())
    payload = {"document": SHORT, "question": QUESTION}
    for _ in range(2):
        out = await graph.ainvoke(payload) if use_async else graph.invoke(payload)
        assert "NEEDLE-0042 is LOCAL" in out["answer"]
        assert out["errors"] == []
    assert len(model.prompts) == 2
    assert "reply cache read failed" in caplog.text

"""What a chat UI receives: `stream_mode="messages"`, run names for tracers, and `updates` streams."""

from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy
from pydantic import PrivateAttr

from rlm_graph import DocumentChatState, create_document_node, create_rlm_graph, is_transient_error
from rlm_graph.answer_stream import RESTART_REASONS, RESTARTED_MESSAGE, AnswerCleaner, AnswerStream
from rlm_graph.prompts import NO_RELEVANT_INFORMATION, is_no_relevant, strip_citation_markers
from tests.fakes import PerfectReader, plant_needles

QUESTION = "List every NEEDLE code."
REWRITTEN = "Which NEEDLE codes appear in the book, please?"


class StreamingReader(PerfectReader):
    """A perfect reader that streams its replies word by word and rewrites follow-ups."""

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        if "<follow_up>" in messages[-1].text:
            with self._lock:
                self._prompts.append(messages[-1].text)
            return ChatResult(generations=[ChatGeneration(message=AIMessage(REWRITTEN))])
        return super()._answer(messages)

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> Iterator[ChatGenerationChunk]:
        text = self._answer(messages).generations[0].message.text
        for word in text.split(" "):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=word + " "))
            if run_manager is not None:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk


class RunNames(BaseCallbackHandler):
    """Records the name, tags and metadata of every chain and chat-model run."""

    def __init__(self) -> None:
        self.chains: list[tuple[str, dict[str, Any]]] = []
        self.models: list[tuple[str, list[str], dict[str, Any]]] = []
        self.parents: dict[UUID, UUID | None] = {}
        self.names: dict[UUID, str] = {}
        self.chain_runs: set[UUID] = set()

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                       tags: list[str] | None = None, metadata: dict[str, Any] | None = None, **kw: Any) -> None:
        name = kw.get("name") or ""
        self.names[run_id], self.parents[run_id] = name, parent_run_id
        self.chains.append((name, dict(metadata or {})))
        self.chain_runs.add(run_id)

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                            tags: list[str] | None = None, metadata: dict[str, Any] | None = None, **kw: Any) -> None:
        name = kw.get("name") or ""
        self.names[run_id], self.parents[run_id] = name, parent_run_id
        self.models.append((name, list(tags or []), dict(metadata or {})))

    def ancestry(self, name: str) -> list[str]:
        """Names of the runs above the first run called ``name``, nearest first."""
        run = next(run_id for run_id, run_name in self.names.items() if run_name == name)
        names = []
        while (run := self.parents.get(run)) is not None:
            names.append(self.names[run])
        return names


def chat_app(model: PerfectReader, **kw: Any):
    builder = StateGraph(DocumentChatState)
    builder.add_node("analyse", create_document_node(model, graph=create_rlm_graph(model, **kw)))
    builder.add_edge(START, "analyse")
    builder.add_edge("analyse", END)
    return builder.compile(checkpointer=InMemorySaver())


async def _messages_stream(app, payload: dict, config: dict) -> list[tuple[tuple, BaseMessage]]:
    received = []
    async for namespace, (message, _metadata) in app.astream(
        payload, config, stream_mode="messages", subgraphs=True
    ):
        received.append((namespace, message))
    return received


async def test_only_the_stored_answer_reaches_a_chat_ui(frankenstein: str) -> None:
    text, facts, _ = plant_needles(frankenstein, 3)
    model = StreamingReader()
    app = chat_app(model)
    config = {"configurable": {"thread_id": "ui"}}
    first = await _messages_stream(app, {"messages": [HumanMessage(QUESTION)], "document": text}, config)
    second = await _messages_stream(app, {"messages": [HumanMessage("and the others?")]}, config)
    state = await app.aget_state(config)
    answers = [m for m in state.values["messages"] if isinstance(m, AIMessage)]
    assert len(answers) == 2
    # The book was read in parts (reads streamed their tokens before) and the follow-up was rewritten.
    assert sum("<document_part start=" in p for p in model.prompts) > 4
    assert any("<follow_up>" in p for p in model.prompts)
    for received, stored in zip((first, second), answers, strict=True):
        ai = [message for _, message in received if isinstance(message, AIMessage)]
        # Only the stored answer, token by token: no read (no marker), no rewrite, no synthesis draft.
        assert len(ai) > 3
        assert {m.id for m in ai} == {stored.id}
        streamed = "".join(m.text for m in ai)
        assert streamed == stored.text
        assert all(fact in streamed for fact in facts)
        assert NO_RELEVANT_INFORMATION not in streamed
        assert REWRITTEN not in streamed
        assert ai[-1].additional_kwargs["citations"] == stored.additional_kwargs["citations"]
        assert stored.additional_kwargs["citations"]


class CitingStreamer(StreamingReader):
    """Streams three characters at a time; its synthesis cites ``[Fn]`` markers; one part's read fails."""

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        result = super()._answer(messages)
        prompt = messages[-1].text
        text = result.generations[0].message.text
        if "<document_part start=" in prompt or "<follow_up>" in prompt or NO_RELEVANT_INFORMATION in text:
            return result
        cited = " ".join(f"{fact} [F1]." for fact in text.split("; "))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(cited))])

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> Iterator[ChatGenerationChunk]:
        text = self._answer(messages).generations[0].message.text
        for start in range(0, len(text), 3):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=text[start : start + 3]))
            if run_manager is not None:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk


def _fail_second_part(prompt: str, _number: int) -> BaseException | None:
    return ValueError("part unreadable") if '<document_part start="' in prompt and "NEEDLE-0001" in prompt else None


async def test_answer_streams_without_markers_and_with_its_coverage_note(frankenstein: str) -> None:
    text, facts, _ = plant_needles(frankenstein[:300_000], 3)
    app = chat_app(CitingStreamer(fail=_fail_second_part))
    config = {"configurable": {"thread_id": "cited"}}
    received = await _messages_stream(app, {"messages": [HumanMessage(QUESTION)], "document": text}, config)
    stored = (await app.aget_state(config)).values["messages"][-1]
    chunks = [m for _, m in received if isinstance(m, AIMessage)]
    assert len(chunks) > 5
    assert {m.id for m in chunks} == {stored.id}
    assert "".join(m.text for m in chunks) == stored.text
    assert not any("[F" in m.text or "F1]" in m.text for m in chunks)
    assert facts[0] in stored.text
    assert facts[1] not in stored.text
    # The note of what could not be read is part of the stream (the last chunk holds it).
    assert stored.response_metadata["rlm_errors"]
    assert stored.text.split("\n\n")[-1] in chunks[-1].text


def test_sync_stream_yields_the_answer_token_by_token(frankenstein: str) -> None:
    text, facts, _ = plant_needles(frankenstein[:100_000], 2)
    app = chat_app(StreamingReader())
    config = {"configurable": {"thread_id": "sync"}}
    payload = {"messages": [HumanMessage(QUESTION)], "document": text}
    received = [m for m, _ in app.stream(payload, config, stream_mode="messages")]
    stored = app.get_state(config).values["messages"][-1]
    assert len(received) > 2
    assert {m.id for m in received} == {stored.id}
    assert "".join(m.text for m in received) == stored.text
    assert all(fact in stored.text for fact in facts)
    # invoke keeps working and stores the same kind of answer.
    again = app.invoke({"messages": [HumanMessage(QUESTION)]}, config)["messages"][-1]
    assert all(fact in again.text for fact in facts)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8])
def test_cleaner_streams_prefixes_of_the_cleaned_answer(size: int) -> None:
    raw = "  Victor [F1] fled [see note] to [F2, F3]Geneva [F9]; [F1; F2] then [Fx] home.  "
    final = strip_citation_markers(raw, range(1, 4))
    assert final == "Victor fled [see note] toGeneva [F9]; then [Fx] home."
    cleaner = AnswerCleaner(3, strip=True)
    seen = ""
    for start in range(0, len(raw), size):
        seen += cleaner.feed(raw[start : start + size])  # each call gives what it settled, once
        assert final.startswith(seen)
        assert "[F1" not in seen
    assert seen == final


def test_cleaner_hands_each_character_to_the_marker_search_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # r31: cleaning a streamed answer must cost time proportional to its length. The old cleaner
    # searched the whole reply so far for markers at every token (quadratic, cubic with brackets).
    import rlm_graph.answer_stream as answer_stream

    searched: list[int] = []
    real = answer_stream.drop_citation_markers

    def counting(text: str, valid: range) -> str:
        searched.append(len(text))
        return real(text, valid)

    monkeypatch.setattr(answer_stream, "drop_citation_markers", counting)
    sentence = "Elizabeth refuses Darcy's proposal at Hunsford [F3][F7]; see [note 2] and [F1, F2]. "
    raw = sentence * 400
    cleaner = AnswerCleaner(7, strip=True)
    streamed = "".join(cleaner.feed(raw[start : start + 4]) for start in range(0, len(raw), 4))
    assert streamed == strip_citation_markers(raw, range(1, 8))
    assert sum(searched) <= len(raw)
    assert len(searched) > 100  # settled text is cleaned as it arrives, not at the end


def test_cleaner_holds_back_a_nothing_relevant_reply() -> None:
    cleaner = AnswerCleaner(2, strip=True)
    assert [cleaner.feed(t) for t in ("**NO_RELEVANT", "_INFORMATION", "** here")] == ["", "", ""]
    answering = AnswerCleaner(2, strip=True)
    pieces = [answering.feed(t) for t in ("**Victor", " fled** to Geneva", " [F1].")]
    assert pieces[0] == ""  # could still become the marker
    assert "".join(pieces) == "**Victor fled** to Geneva."


def test_missing_document_reply_streams_with_its_id() -> None:
    app = chat_app(StreamingReader())
    config = {"configurable": {"thread_id": "empty"}}
    received = [m for m, _ in app.stream({"messages": [HumanMessage(QUESTION)]}, config, stream_mode="messages")]
    stored = app.get_state(config).values["messages"][-1]
    assert [(m.id, m.text) for m in received if isinstance(m, AIMessage)] == [(stored.id, stored.text)]


def test_runs_carry_readable_names_and_metadata(frankenstein: str) -> None:
    text, _, _ = plant_needles(frankenstein[:400_000], 2)
    model = StreamingReader(window=8192)
    # Without reading ahead every read sits under its part (test_read_ahead covers the other case).
    app = chat_app(model, max_depth=2, read_ahead=False)
    tracer = RunNames()
    config = {"configurable": {"thread_id": "trace"}, "callbacks": [tracer]}
    app.invoke({"messages": [HumanMessage(QUESTION)], "document": text}, config)
    app.invoke({"messages": [HumanMessage("and the others?")]}, config)
    model_names = [name for name, _, _ in tracer.models]
    # Every model call is named, tagged nostream and says what it does and where; only the
    # "answer" runs (the cleaned final answer, token by token) reach stream_mode="messages".
    assert all(name != "StreamingReader" for name in model_names), model_names
    assert all("nostream" in tags for name, tags, _ in tracer.models if name != "answer")
    answers = [(tags, meta) for name, tags, meta in tracer.models if name == "answer"]
    assert len(answers) == 2
    assert all("nostream" not in tags and meta["rlm_kind"] == "answer" for tags, meta in answers)
    assert "synthesize" in model_names
    assert "rewrite follow-up" in model_names
    reads = [(name, meta) for name, _, meta in tracer.models if name.startswith("read part ")]
    assert reads
    assert all(meta["rlm_kind"] == "read" and len(meta["rlm_span"]) == 2 for _, meta in reads)
    nested = [(name, meta) for name, meta in tracer.chains if name.startswith("rlm[depth=1, ")]
    assert nested, "the book needs a nested level at this window"
    name, meta = nested[0]
    assert meta["rlm_depth"] == 1
    assert name == f"rlm[depth=1, {meta['rlm_span'][0]}-{meta['rlm_span'][1]}]"
    assert meta["rlm_offset"] == meta["rlm_span"][0]
    # A read at depth 1 sits under its nested level, which sits under the chat turn's analysis run.
    deep = next(name for name, _, meta in tracer.models if name.startswith("read part ") and meta["rlm_depth"] == 1)
    above = tracer.ancestry(deep)
    assert any(name.startswith("rlm[depth=1, ") for name in above)
    assert "rlm" in above
    assert "analyse" in above
    # A node is one run in the trace, not a run of its own name inside the task's run.
    doubled = {
        name
        for run, name in tracer.names.items()
        if run in tracer.chain_runs and tracer.names.get(tracer.parents[run]) == name
    }
    assert not doubled, doubled


def test_updates_stream_carries_no_internal_bookkeeping(frankenstein: str) -> None:
    text, _, _ = plant_needles(frankenstein[:200_000], 2)
    app = chat_app(StreamingReader())
    config = {"configurable": {"thread_id": "updates"}}
    keys: set[str] = set()
    for _namespace, update in app.stream(
        {"messages": [HumanMessage(QUESTION)], "document": text}, config, stream_mode="updates", subgraphs=True
    ):
        for node_update in update.values():
            if isinstance(node_update, dict):
                keys |= set(node_update)
    internal = {"run_key", "route", "budget", "parts", "pending", "leaves", "plan", "focus"}
    assert not keys & internal, sorted(keys)


def test_navigate_mode_streams_only_the_stored_answer() -> None:
    from tests.navigator_fakes import ScriptedNavigator, call, calls
    from tests.test_navigate import _ask_grep_hits, _final_from_last, needle_document

    document, _ = needle_document()
    navigator = ScriptedNavigator(
        reader=StreamingReader(window=8192),
        script=[calls(call("grep", pattern=r"NEEDLE-\d+")), _ask_grep_hits, _final_from_last],
    )
    graph = create_rlm_graph(navigator, context_window=8192, part_tokens=2048, cache=False, mode="navigate")
    builder = StateGraph(DocumentChatState)
    builder.add_node("analyse", create_document_node(navigator, graph=graph))
    builder.add_edge(START, "analyse")
    builder.add_edge("analyse", END)
    app = builder.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "nav"}}
    payload = {"messages": [HumanMessage("What is NEEDLE-0042?")], "document": document}
    received = [m for _, (m, _) in app.stream(payload, config, stream_mode="messages", subgraphs=True)]
    stored = app.get_state(config).values["messages"][-1]
    assert stored.text.split("\n\n")[0] == "NEEDLE-0042 is QUASAR"
    assert "The navigator read <1% of the document" in stored.text  # its note is streamed too
    # No tool call, tool result or read: only the answer, as stored.
    assert [(type(m).__name__, m.id, m.text) for m in received] == [("AIMessage", stored.id, stored.text)]


def test_chat_service_router_does_not_stream(frankenstein: str) -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    try:
        from chat_service import build_chat_graph
    finally:
        sys.path.pop(0)
    text, facts, _ = plant_needles(frankenstein[:100_000], 2)
    model = StreamingReader()
    app = build_chat_graph(model, InMemorySaver())
    config = {"configurable": {"thread_id": "routed"}}
    payload = {"messages": [HumanMessage(QUESTION)], "document": text}
    received = [m for _, (m, _) in app.stream(payload, config, stream_mode="messages", subgraphs=True)]
    stored = app.get_state(config).values["messages"][-1]
    # The router was asked (its reply is a marker, so the question went to the document node) but is not shown.
    assert any("Reply with exactly one word: DOCUMENT or CHAT." in p for p in model.prompts)
    assert all(fact in stored.text for fact in facts)
    answer = [m for m in received if isinstance(m, AIMessage)]
    assert len(answer) > 1
    assert {m.id for m in answer} == {stored.id}
    assert "".join(m.text for m in answer) == stored.text


class BreaksMidAnswer(StreamingReader):
    """Streams word by word; the first final-answer call breaks off after a few words (a reset connection).

    The retry words the answer differently, as a sampled model does: the fragment is not a prefix of it.
    """

    _broke: bool = PrivateAttr(default=False)

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> Iterator[ChatGenerationChunk]:
        prompt = messages[-1].text
        final = "<document_part start=" not in prompt and "<follow_up>" not in prompt
        with self._lock:
            breaks, self._broke = final and not self._broke, self._broke or final
        if not breaks:
            yield from super()._stream(messages, stop, run_manager, **kw)
            return
        for word in FRAGMENT.split(" "):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=word + " "))
            if run_manager is not None:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
        yield from self._after_fragment()

    def _after_fragment(self) -> Iterator[ChatGenerationChunk]:
        raise ConnectionError("connection reset by peer")


FRAGMENT = "The codes are, as far as I can tell, only"
QUICK_RETRY = RetryPolicy(initial_interval=0.01, jitter=False, max_attempts=3, retry_on=is_transient_error)


def _received(events: list[tuple[str, Any]]) -> tuple[list[str], list[dict[str, Any]], list[str]]:
    """The answer's chunk texts before and after the restart event, and the custom events."""
    before: list[str] = []
    after: list[str] = []
    custom: list[dict[str, Any]] = []
    for mode, data in events:
        if mode == "custom" and data.get("type") == "answer.restarted":
            custom.append(data)
        elif mode == "messages" and isinstance(data[0], AIMessage):
            (after if custom else before).append(data[0].text)
    return before, custom, after


@pytest.mark.parametrize("length", [3_000, 120_000], ids=["direct", "synthesis"])
@pytest.mark.parametrize("how", ["stream", "astream", "invoke", "ainvoke"])
async def test_a_retried_answer_replaces_the_fragment_of_the_failed_call(
    frankenstein: str, how: str, length: int
) -> None:
    # r21: the answering call streams a few words, the connection drops, the node's retry
    # policy calls again. The stored answer is the retry's; a UI is told to drop the fragment.
    text, facts, _ = plant_needles(frankenstein[:length], 2)
    model = BreaksMidAnswer()
    app = chat_app(model, retry_policy=QUICK_RETRY, cache=False)
    config = {"configurable": {"thread_id": how}}
    payload = {"messages": [HumanMessage(QUESTION)], "document": text}
    modes = ["messages", "custom"]
    events: list[tuple[str, Any]] = []
    if how == "stream":
        events = list(app.stream(payload, config, stream_mode=modes))
    elif how == "astream":
        events = [event async for event in app.astream(payload, config, stream_mode=modes)]
    elif how == "invoke":
        app.invoke(payload, config)
    else:
        await app.ainvoke(payload, config)
    stored = (await app.aget_state(config)).values["messages"][-1]
    assert all(fact in stored.text for fact in facts)
    assert FRAGMENT.split(",")[0] not in stored.text
    if how in ("invoke", "ainvoke"):
        return
    before, restarted, after = _received(events)
    assert "".join(before).strip() == FRAGMENT  # the UI saw the fragment...
    assert len(restarted) == 1  # ...was told once to drop it, before the retry's first token...
    assert restarted[0]["message_id"] == stored.id
    assert restarted[0]["discarded"] == len("".join(before))
    assert "ConnectionError" in restarted[0]["message"]
    assert "".join(after) == stored.text  # ...and the chunks after the event are the stored answer


class CutMidAnswer(BreaksMidAnswer):
    """Streams word by word; its first final answer stops at the output limit (``finish_reason`` length)."""

    def _after_fragment(self) -> Iterator[ChatGenerationChunk]:
        yield ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata={"finish_reason": "length"}))


@pytest.mark.parametrize("length", [3_000, 120_000], ids=["direct", "synthesis"])
@pytest.mark.parametrize("how", ["stream", "astream"])
async def test_a_corrected_answer_replaces_the_cut_one_and_says_why(frankenstein: str, how: str, length: int) -> None:
    # The answering call stops at max_tokens after a few words: its reply is not read, the model
    # is asked again, and the UI is told to drop the cut text because it could not be read (no
    # call failed).
    text, facts, _ = plant_needles(frankenstein[:length], 2)
    model = CutMidAnswer()
    app = chat_app(model, cache=False)
    config = {"configurable": {"thread_id": how}}
    payload = {"messages": [HumanMessage(QUESTION)], "document": text}
    modes = ["messages", "custom"]
    if how == "stream":
        events = list(app.stream(payload, config, stream_mode=modes))
    else:
        events = [event async for event in app.astream(payload, config, stream_mode=modes)]
    stored = (await app.aget_state(config)).values["messages"][-1]
    assert all(fact in stored.text for fact in facts)
    assert FRAGMENT.split(",")[0] not in stored.text
    before, restarted, after = _received(events)
    assert "".join(before).strip() == FRAGMENT
    assert [event["message"] for event in restarted] == [f"{RESTARTED_MESSAGE}: {RESTART_REASONS['unreadable']}"]
    assert restarted[0]["discarded"] == len("".join(before))
    assert "".join(after) == stored.text


def test_an_answer_unlike_what_was_streamed_is_stored_and_the_ui_told() -> None:
    # The answering call streamed a fragment and then failed for good: the answer stored is
    # the one the node gives (its note), never the fragment.
    written: list[dict[str, Any]] = []
    stream = AnswerStream("answer-1", {}, written.append)
    stream.offer("call 1", "The launch is")
    stored = stream.close(AIMessage("Part 1 of 1 could not be read.", id="answer-1"))
    assert stored.text == "Part 1 of 1 could not be read."
    assert [(e["type"], e["message_id"], e["discarded"]) for e in written] == [("answer.restarted", "answer-1", 13)]


@pytest.mark.parametrize("seed", range(40))
def test_cleaner_pieces_join_to_the_cleaned_reply_whatever_the_tokens(seed: int) -> None:
    import random

    rng = random.Random(seed)
    pieces = ["Victor", " fled", " [F1]", "[F2, F3]", " [see note]", " [F9]", "  ", "\n\n", "**", "[F1; F2]", " to"]
    pieces += [".", " [", "]", "[F", "2]"]
    raw = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 40)))
    markers = rng.choice([0, 3])
    cleaner = AnswerCleaner(markers, strip=True)
    streamed = ""
    start = 0
    while start < len(raw):
        size = rng.randint(1, 6)
        streamed += cleaner.feed(raw[start : start + size])
        start += size
    final = strip_citation_markers(raw, range(1, markers + 1)) if markers else raw.strip()
    if is_no_relevant(final) or len(final.strip("`*\"'. \n")) < len(NO_RELEVANT_INFORMATION):
        return  # too short to tell from the marker: the chat node sends it whole at the end
    assert final.startswith(streamed)
    if raw.rfind("[") < raw.rfind("]") or "[" not in raw:
        assert streamed == final.rstrip()  # no bracket left open: only trailing whitespace is held back


async def _streamed_and_stored(model: PerfectReader, text: str) -> tuple[list[tuple[str, Any]], AIMessage]:
    """One question about ``text`` through the chat node: the messages and custom events, and the stored answer."""
    app = chat_app(model, cache=False)
    config = {"configurable": {"thread_id": "streamed"}}
    payload = {"messages": [HumanMessage(QUESTION)], "document": text}
    events = [event async for event in app.astream(payload, config, stream_mode=["messages", "custom"])]
    return events, (await app.aget_state(config)).values["messages"][-1]


class ThinkingStreamingReader(StreamingReader):
    """Streams every reply after a ``<think>`` block that weighs a code the document lacks."""

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        result = super()._answer(messages)
        thought = "<think>\nCould it be NEEDLE-9999 is DECOY? No. [F1] maybe.\n</think>\n\n"
        text = thought + result.generations[0].message.text
        return ChatResult(generations=[ChatGeneration(message=AIMessage(text))])


@pytest.mark.parametrize("length", [3_000, 120_000], ids=["direct", "synthesis"])
async def test_a_reasoning_models_thoughts_are_never_streamed_or_stored(frankenstein: str, length: int) -> None:
    text, facts, _ = plant_needles(frankenstein[:length], 2)
    events, stored = await _streamed_and_stored(ThinkingStreamingReader(), text)
    before, restarted, _ = _received(events)
    assert all(fact in stored.text for fact in facts)
    assert "think" not in stored.text
    assert "DECOY" not in stored.text
    assert not restarted
    assert "".join(before) == stored.text  # the chunks the UI joins are the stored answer, thoughts left out


class ThinkingWithoutOpeningTag(StreamingReader):
    """Streams replies that start inside the reasoning block (DeepSeek-R1's chat template opens it)."""

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        result = super()._answer(messages)
        text = "Could it be NEEDLE-9999 is DECOY? No.\n</think>\n\n" + result.generations[0].message.text
        return ChatResult(generations=[ChatGeneration(message=AIMessage(text))])


async def test_thoughts_without_an_opening_tag_are_withdrawn_once_the_answer_shows(frankenstein: str) -> None:
    # They cannot be told from an answer until </think>: they stream, then the UI is told to drop them.
    text, facts, _ = plant_needles(frankenstein[:120_000], 2)
    events, stored = await _streamed_and_stored(ThinkingWithoutOpeningTag(), text)
    _, restarted, after = _received(events)
    assert all(fact in stored.text for fact in facts)
    assert "DECOY" not in stored.text
    assert [event["message"] for event in restarted] == [f"{RESTARTED_MESSAGE}: {RESTART_REASONS['replaced']}"]
    assert "".join(after) == stored.text

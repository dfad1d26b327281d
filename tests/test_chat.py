"""The document node in a MessagesState chat graph: attachments, follow-ups, threads."""

import base64
import hashlib
import sqlite3

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, RemoveMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from rlm_graph import DocumentChatState, create_document_node, create_rlm_graph
from rlm_graph.chat import MISSING_DOCUMENT_MESSAGE, QUESTION_TOO_LONG_MESSAGE
from rlm_graph.chat_messages import split_message
from rlm_graph.documents import normalize_text
from rlm_graph.replies import Unreadable
from rlm_graph.rewrite import read_standalone
from rlm_graph.tokens import TiktokenCounter
from tests.fakes import PerfectReader, plant_needles
from tests.openai_server import ChatServer, Request, default_structured_reply

QUESTION = "List every NEEDLE code."


class Condenser(PerfectReader):
    """A perfect reader that rewrites follow-ups to a fixed standalone question."""

    standalone: str = "List every NEEDLE code, please."

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        if "<follow_up>" in messages[-1].text:
            tokens = self.get_num_tokens_from_messages(messages)
            with self._lock:
                self._prompts.append(messages[-1].text)
                if tokens + self.reserved_output > self.window:
                    self._overflows += 1
                    msg = f"context_length_exceeded: {tokens} + {self.reserved_output} > {self.window}"
                    raise ValueError(msg)
            return ChatResult(generations=[ChatGeneration(message=AIMessage(self.standalone))])
        return super()._answer(messages)


def chat_app(model: PerfectReader, checkpointer=None):
    builder = StateGraph(DocumentChatState)
    builder.add_node("analyse", create_document_node(model))
    builder.add_edge(START, "analyse")
    builder.add_edge("analyse", END)
    return builder.compile(checkpointer=checkpointer)


async def test_answer_is_an_ai_message_with_citations(frankenstein: str) -> None:
    text, facts, offsets = plant_needles(frankenstein, 5)
    app = chat_app(PerfectReader())
    state = await app.ainvoke({"messages": [HumanMessage(QUESTION)], "document": text})
    reply = state["messages"][-1]
    assert isinstance(reply, AIMessage)
    assert all(fact in reply.text for fact in facts)
    citations = reply.additional_kwargs["citations"]
    assert citations == reply.response_metadata["citations"]
    assert all(any(c["start"] <= o < c["end"] for c in citations) for o in offsets)
    assert state["rlm_usage"]["llm_calls"] > 1


async def test_short_document_goes_direct() -> None:
    model = PerfectReader()
    app = chat_app(model)
    state = await app.ainvoke({"messages": [HumanMessage(QUESTION)], "document": "NEEDLE-0001 is SHORT."})
    assert "NEEDLE-0001 is SHORT" in state["messages"][-1].text
    assert len(model.prompts) == 1


async def test_missing_document_gets_a_helpful_reply() -> None:
    model = PerfectReader()
    state = await chat_app(model).ainvoke({"messages": [HumanMessage(QUESTION)]})
    assert state["messages"][-1].text == MISSING_DOCUMENT_MESSAGE
    assert model.prompts == []


def test_attachment_formats_are_understood() -> None:
    body = "NEEDLE-0002 is ATTACHED."
    encoded = base64.b64encode(body.encode()).decode()
    blocks = [
        {"type": "text-plain", "text": body, "mime_type": "text/plain"},
        {"type": "file", "base64": encoded, "mime_type": "text/plain"},
        {"type": "file", "source_type": "base64", "data": encoded, "mime_type": "text/markdown"},
        {"type": "file", "file": {"file_data": f"data:text/plain;base64,{encoded}", "filename": "a.txt"}},
    ]
    for block in blocks:
        text, documents, unsupported = split_message(HumanMessage([{"type": "text", "text": "What?"}, block]))
        assert (text, documents, unsupported) == ("What?", [body], [])
    pdf = {"type": "file", "base64": "JVBERi0=", "mime_type": "application/pdf"}
    assert split_message(HumanMessage([pdf]))[2] == ["application/pdf"]


async def test_attachment_becomes_the_thread_document(frankenstein: str) -> None:
    # An attachment is read by the one offsets rule (byte-order mark removed, newlines as LF).
    text, facts, _ = plant_needles(normalize_text(frankenstein[:100_000]), 3)
    encoded = base64.b64encode(text.encode()).decode()
    model = Condenser()
    app = chat_app(model, InMemorySaver())
    config = {"configurable": {"thread_id": "attach"}}
    first = HumanMessage(
        [{"type": "text", "text": QUESTION}, {"type": "file", "base64": encoded, "mime_type": "text/plain"}]
    )
    state = await app.ainvoke({"messages": [first]}, config)
    assert state["document"] == text
    assert all(fact in state["messages"][-1].text for fact in facts)
    # The follow-up reuses the saved document; the condense prompt never holds it.
    state = await app.ainvoke({"messages": [HumanMessage("and the others?")]}, config)
    assert all(fact in state["messages"][-1].text for fact in facts)
    condense = [p for p in model.prompts if "<follow_up>" in p]
    assert len(condense) == 1
    assert text[:2000] not in condense[0]
    assert "(attached a document)" not in condense[0]
    assert f"user: {QUESTION}" in condense[0]


async def test_follow_up_is_condensed_with_trimmed_history(frankenstein: str) -> None:
    text, facts, _ = plant_needles(frankenstein, 4)
    model = Condenser(standalone="Which NEEDLE codes appear, and what do they stand for?")
    app = chat_app(model, InMemorySaver())
    config = {"configurable": {"thread_id": "follow"}}
    await app.ainvoke({"messages": [HumanMessage(QUESTION)], "document": text}, config)
    chatter = []
    for n in range(30):
        chatter += [HumanMessage(f"filler question {n} " + "blah " * 100), AIMessage("filler answer " + "meh " * 100)]
    await app.aupdate_state(config, {"messages": chatter})
    state = await app.ainvoke({"messages": [HumanMessage("and what do they stand for?")]}, config)
    reply = state["messages"][-1]
    assert reply.additional_kwargs["rlm_question"] == model.standalone
    assert any(model.standalone in p for p in model.prompts if "<document_part start=" in p)
    (condense,) = [p for p in model.prompts if "<follow_up>" in p]
    history = condense.split("<conversation>")[1].split("</conversation>")[0]
    assert TiktokenCounter().count(history) <= 2000
    assert "filler question 29" in history
    assert "filler question 0 " not in history
    assert all(fact in reply.text for fact in facts)
    assert state["rlm_usage"]["llm_calls"] > reply.response_metadata["rlm_usage"]["llm_calls"]


def test_sync_invoke_works(frankenstein: str) -> None:
    text, facts, _ = plant_needles(frankenstein[:80_000], 2)
    state = chat_app(PerfectReader()).invoke({"messages": [HumanMessage(QUESTION)], "document": text})
    assert all(fact in state["messages"][-1].text for fact in facts)


async def test_progress_streams_from_the_chat_graph(frankenstein: str) -> None:
    app = chat_app(PerfectReader())
    events = [
        chunk
        async for _, chunk in app.astream(
            {"messages": [HumanMessage(QUESTION)], "document": frankenstein}, stream_mode="custom", subgraphs=True
        )
    ]
    assert {e["depth"] for e in events} == {0, 1}


# --- The follow-up rewrite fits the window; long questions get a clear reply (issue "Answers users can trust") ---


def small_chat(window: int, output: int, standalone: str = "List every NEEDLE code, please.", checkpointer=None):
    model = Condenser(window=window, reserved_output=output, standalone=standalone)
    builder = StateGraph(DocumentChatState)
    graph = create_rlm_graph(model, max_output_tokens=output, cache=False)
    builder.add_node("analyse", create_document_node(model, graph))
    builder.add_edge(START, "analyse")
    builder.add_edge("analyse", END)
    return model, builder.compile(checkpointer=checkpointer or InMemorySaver())


async def test_condense_history_is_sized_to_the_window(frankenstein: str) -> None:
    text, facts, _ = plant_needles(frankenstein[:60_000], 2)
    model, app = small_chat(2048, 256)
    config = {"configurable": {"thread_id": "small"}}
    await app.ainvoke({"messages": [HumanMessage(QUESTION)], "document": text}, config)
    chatter = []
    for n in range(8):
        chatter += [HumanMessage(f"question {n}?"), AIMessage(f"answer {n} " + "the long answer goes on " * 60)]
    await app.aupdate_state(config, {"messages": chatter})
    state = await app.ainvoke({"messages": [HumanMessage("and what do they stand for?")]}, config)
    assert model.overflows == 0
    (condense,) = [p for p in model.prompts if "<follow_up>" in p]
    assert "answer 7" in condense  # the most recent turn is kept
    assert "question 0?" not in condense
    assert all(fact in state["messages"][-1].text for fact in facts)


async def test_follow_up_too_long_for_the_rewrite_gets_a_clear_reply(frankenstein: str) -> None:
    model, app = small_chat(4096, 512)
    config = {"configurable": {"thread_id": "long"}}
    await app.ainvoke({"messages": [HumanMessage(QUESTION)], "document": frankenstein[:50_000]}, config)
    calls = len(model.prompts)
    quote = "And this passage? " + frankenstein[60_000:80_000]
    state = await app.ainvoke({"messages": [HumanMessage(quote)]}, config)
    assert state["messages"][-1].text.startswith(QUESTION_TOO_LONG_MESSAGE.split("(")[0])
    assert model.overflows == 0
    assert len(model.prompts) == calls  # no call was attempted


async def test_first_question_too_long_for_the_analysis_gets_a_clear_reply(frankenstein: str) -> None:
    model, app = small_chat(4096, 512)
    question = "Is this consistent? " + frankenstein[60_000:72_000]
    config = {"configurable": {"thread_id": "first"}}
    state = await app.ainvoke({"messages": [HumanMessage(question)], "document": frankenstein[:50_000]}, config)
    assert state["messages"][-1].text.startswith(QUESTION_TOO_LONG_MESSAGE.split("(")[0])
    assert model.prompts == []


async def test_rewritten_question_too_long_gets_a_clear_reply(frankenstein: str) -> None:
    rambling = " ".join(frankenstein[60_000:90_000].split())  # one line, thousands of tokens
    model, app = small_chat(8192, 1024, standalone=rambling)
    config = {"configurable": {"thread_id": "rewrite"}}
    await app.ainvoke({"messages": [HumanMessage(QUESTION)], "document": frankenstein[:50_000]}, config)
    state = await app.ainvoke({"messages": [HumanMessage("and the others?")]}, config)
    reply = state["messages"][-1]
    assert reply.text.startswith(QUESTION_TOO_LONG_MESSAGE.split("(")[0])
    assert model.overflows == 0
    assert not any(rambling[:200] in p for p in model.prompts if "<follow_up>" not in p)
    assert state["rlm_usage"]["llm_calls"] >= 2  # the rewrite call is still counted


async def test_too_long_message_is_localizable(frankenstein: str) -> None:
    model = Condenser(window=4096, reserved_output=512)
    builder = StateGraph(DocumentChatState)
    node = create_document_node(
        model, create_rlm_graph(model, max_output_tokens=512), question_too_long_message="Kysymys on liian pitkä."
    )
    builder.add_node("analyse", node)
    builder.add_edge(START, "analyse")
    question = "Is this consistent? " + frankenstein[60_000:72_000]
    state = await builder.compile().ainvoke({"messages": [HumanMessage(question)], "document": frankenstein[:9000]})
    assert state["messages"][-1].text == "Kysymys on liian pitkä."


# --- The document is stored once per thread, not once per checkpoint ---


def _stored_bytes(conn: sqlite3.Connection) -> int:
    checkpoints = conn.execute("select coalesce(sum(length(checkpoint)), 0) from checkpoints").fetchone()[0]
    writes = conn.execute("select coalesce(sum(length(value)), 0) from writes").fetchone()[0]
    return checkpoints + writes


def test_checkpoints_store_the_document_once(frankenstein: str) -> None:
    text, facts, _ = plant_needles(frankenstein[:200_000], 3)
    size = len(text.encode())
    model = PerfectReader()
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    app = chat_app(model, SqliteSaver(conn))
    config = {"configurable": {"thread_id": "user-1"}}
    attachment = {"type": "text-plain", "text": text, "mime_type": "text/plain"}
    first = HumanMessage([{"type": "text", "text": QUESTION}, attachment])
    growth = []
    before = 0
    for message in [first, HumanMessage("And the codes again?"), HumanMessage("Once more, the codes?")]:
        state = app.invoke({"messages": [message]}, config)
        assert all(fact in state["messages"][-1].text for fact in facts)
        growth.append((_stored_bytes(conn) - before) / size)
        before = _stored_bytes(conn)
    # The first turn stores what the user sent (LangGraph saves the input) and the thread's copy;
    # later turns store the conversation only.
    assert growth[0] < 3.2, growth
    assert max(growth[1:]) < 0.05, growth
    assert state["document"] == text
    stored_first = state["messages"][0]
    assert text[:1000] not in str(stored_first.content)
    (reference,) = stored_first.additional_kwargs["rlm_attachments"]
    assert reference == {"sha256": hashlib.sha256(text.encode()).hexdigest(), "chars": len(text)}
    # The nested analysis wrote no checkpoints of its own into the chat thread.
    namespaces = {row[0] for row in conn.execute("select distinct checkpoint_ns from checkpoints")}
    assert namespaces == {""}


async def test_analysis_writes_no_checkpoints_into_the_chat_thread(frankenstein: str) -> None:
    text, facts, _ = plant_needles(frankenstein[:200_000], 3)
    saver = InMemorySaver()
    app = chat_app(PerfectReader(), saver)
    config = {"configurable": {"thread_id": "async"}}
    state = await app.ainvoke({"messages": [HumanMessage(QUESTION)], "document": text}, config)
    assert all(fact in state["messages"][-1].text for fact in facts)
    assert set(saver.storage["async"]) == {""}


# --- The answer and usage pass through unchanged ---


async def test_reply_keeps_the_analysis_answer_and_usage(frankenstein: str) -> None:
    text, _, _ = plant_needles(frankenstein[:200_000], 3)

    def fail(prompt: str, _: int) -> BaseException | None:
        return ValueError("unreadable") if "<document_part start=" in prompt and "NEEDLE-0001" in prompt else None

    model = Condenser(fail=fail)
    graph = create_rlm_graph(model, cache=False, retry_policy=None)
    expected = await graph.ainvoke({"document": text, "question": QUESTION})
    assert expected["errors"]
    builder = StateGraph(DocumentChatState)
    builder.add_node("analyse", create_document_node(model, graph))
    builder.add_edge(START, "analyse")
    app = builder.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "usage"}}
    state = await app.ainvoke({"messages": [HumanMessage(QUESTION)], "document": text}, config)
    reply = state["messages"][-1]
    assert reply.text == expected["answer"]
    assert reply.additional_kwargs["rlm_errors"] == expected["errors"]
    assert reply.response_metadata["rlm_usage"]["llm_calls"] == expected["usage"]["llm_calls"]
    state = await app.ainvoke({"messages": [HumanMessage("and the others?")]}, config)
    replies = [m for m in state["messages"] if isinstance(m, AIMessage)]
    calls = sum(m.response_metadata["rlm_usage"]["llm_calls"] for m in replies)
    assert state["rlm_usage"]["llm_calls"] == calls
    assert calls == 2 * expected["usage"]["llm_calls"] + 1  # two analyses and one rewrite


async def test_durable_analysis_checkpoints_in_the_chat_thread(frankenstein: str) -> None:
    text, facts, _ = plant_needles(frankenstein[:200_000], 3)
    saver = InMemorySaver()
    model = PerfectReader()
    builder = StateGraph(DocumentChatState)
    builder.add_node("analyse", create_document_node(model, durable_analysis=True))
    builder.add_edge(START, "analyse")
    app = builder.compile(checkpointer=saver)
    config = {"configurable": {"thread_id": "durable"}}
    state = await app.ainvoke({"messages": [HumanMessage(QUESTION)], "document": text}, config)
    assert all(fact in state["messages"][-1].text for fact in facts)
    assert len(set(saver.storage["durable"])) > 1  # the analysis kept its own checkpoints to resume from


def test_messages_written_without_ids_keep_their_ids_across_reads() -> None:
    # DocumentChatState's messages channel replays saved writes on every read.
    app = chat_app(PerfectReader(), InMemorySaver())
    config = {"configurable": {"thread_id": "ids"}}
    app.invoke({"messages": [("user", QUESTION)], "document": "NEEDLE-0003 is HERE."}, config)
    app.invoke({"messages": "and again?"}, config)
    first = [m.id for m in app.get_state(config).values["messages"]]
    assert first == [m.id for m in app.get_state(config).values["messages"]]
    assert len(set(first)) == 4
    app.update_state(config, {"messages": [RemoveMessage(id=first[0])]})
    assert [m.id for m in app.get_state(config).values["messages"]] == first[1:]


# --- r29: the follow-up rewrite is read strictly (issue 27, rule 1) ---

REFUSAL = "Elizabeth refused Darcy's first proposal at Hunsford parsonage."
STANDALONE = "Where did Elizabeth refuse Darcy's first proposal?"


class Rewriter(PerfectReader):
    """Rewrites follow-ups with scripted replies (one per call, the last repeated); reads as a perfect reader."""

    rewrites: tuple[str, ...] = ()

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        prompt = "\n".join(m.text for m in messages)
        if "<follow_up>" not in prompt:
            return super()._answer(messages)
        with self._lock:
            self._prompts.append(prompt)
            made = sum("<follow_up>" in p for p in self._prompts)
        reply = self.rewrites[min(made, len(self.rewrites)) - 1]
        return ChatResult(generations=[ChatGeneration(message=AIMessage(reply))])

    def rewrite_prompts(self) -> list[str]:
        return [p for p in self.prompts if "<follow_up>" in p]


def _refusal_document() -> str:
    words = ("the", "of", "and", "a", "to", "in", "is", "was", "he", "she", "it", "that", "for", "on", "with")
    filler = "\n\n".join(" ".join(words[(i * 7 + j) % len(words)] for j in range(60)) + "." for i in range(60))
    return f"{filler}\n\nNEEDLE-0001 is HUNSFORD. {REFUSAL}\n\n{filler}"


async def _follow_up(model: Rewriter) -> tuple[AIMessage, dict, list[dict]]:
    app = chat_app(model)
    history = [HumanMessage("Who proposed to Elizabeth first?"), AIMessage("Mr. Collins, then Darcy.")]
    payload = {"messages": [*history, HumanMessage("And where did she refuse him?")], "document": _refusal_document()}
    events: list[dict] = []
    state: dict = {}
    async for mode, data in app.astream(payload, stream_mode=["custom", "values"]):
        if mode == "custom":
            events.append(data)
        else:
            state = data
    return state["messages"][-1], state, events


@pytest.mark.parametrize(
    "reply",
    [
        f"Here is the standalone question:\n\n{STANDALONE}",
        f'"{STANDALONE}"',
        f"**Standalone question:** {STANDALONE}",
        f"Rewritten question: “{STANDALONE}”",
        f"```\n{STANDALONE}\n```",
        f"> {STANDALONE}",
        f"## {STANDALONE}",
        f"  *{STANDALONE}*  ",
    ],
)
def test_rewrite_wrappers_are_removed_by_rule(reply: str) -> None:
    assert read_standalone(reply) == STANDALONE


@pytest.mark.parametrize(
    "question", ['"Pride" and "Prejudice": which came first?', "Is **bold** or *italic* used in chapter 3?"]
)
def test_marks_inside_the_question_are_kept(question: str) -> None:
    assert read_standalone(question) == question
    assert read_standalone(f"Rewritten question:\n{question}") == question


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "Here is the standalone question:",
        f"{STANDALONE}\nThis replaces 'she' with Elizabeth and 'him' with Darcy.",
        f"Sure! Here are two options:\n1. {STANDALONE}\n2. Where was Darcy refused?",
    ],
)
def test_a_rewrite_that_is_not_one_question_is_unreadable(reply: str) -> None:
    assert isinstance(read_standalone(reply), Unreadable)


async def test_a_rewrite_with_a_preamble_answers_the_rewritten_question() -> None:
    model = Rewriter(rewrites=(f"Here is the standalone question:\n\n{STANDALONE}",))
    message, state, _ = await _follow_up(model)
    assert message.additional_kwargs["rlm_question"] == STANDALONE
    assert "NEEDLE-0001 is HUNSFORD" in message.text
    assert len(model.rewrite_prompts()) == 1
    assert not state["rlm_usage"].get("unparsed_replies")


async def test_a_rewrite_after_a_reasoning_models_thoughts_is_read_without_them() -> None:
    # A reasoning model's server left its <think> block in content: the question is after it.
    thoughts = "<think>\nShe is Elizabeth. Maybe: Where did Jane refuse Bingley?\n</think>\n\n"
    model = Rewriter(rewrites=(thoughts + STANDALONE,))
    message, state, _ = await _follow_up(model)
    assert message.additional_kwargs["rlm_question"] == STANDALONE
    assert len(model.rewrite_prompts()) == 1
    assert not state["rlm_usage"].get("unparsed_replies")


async def test_an_unreadable_rewrite_is_corrected_once() -> None:
    model = Rewriter(rewrites=(f"{STANDALONE}\nThis replaces 'she' with Elizabeth.", STANDALONE))
    message, state, _ = await _follow_up(model)
    _, second = model.rewrite_prompts()
    assert "could not be read" in second  # the corrective follow-up says what was wrong
    assert message.additional_kwargs["rlm_question"] == STANDALONE
    assert not state["rlm_usage"].get("unparsed_replies")
    assert not message.response_metadata["rlm_errors"]


async def test_a_rewrite_unreadable_twice_falls_back_to_the_users_words_and_says_so() -> None:
    rambling = "Here is the standalone question:"
    model = Rewriter(rewrites=(rambling,))
    message, state, events = await _follow_up(model)
    assert len(model.rewrite_prompts()) == 2
    assert message.additional_kwargs["rlm_question"] == "And where did she refuse him?"
    # Counted and reported: usage, errors, the progress stream and the answer itself.
    assert state["rlm_usage"]["unparsed_replies"] == 1
    assert message.response_metadata["rlm_usage"]["unparsed_replies"] == 1
    (error,) = [e for e in message.response_metadata["rlm_errors"] if e.get("kind") == "unparsed"]
    assert error["reply"] == rambling
    assert message.additional_kwargs["rlm_errors"] == message.response_metadata["rlm_errors"]
    (event,) = [e for e in events if e.get("stage") == "rewrite"]
    assert event["status"] == "failed"
    assert "as you wrote it" in event["message"]
    assert "as you wrote it" in message.text


def _rewrite_requests(server: ChatServer) -> list[Request]:
    return [r for r in server.requests if r.kind == "rewrite"]


@pytest.mark.parametrize("reject", [False, True], ids=["structured", "server refuses schemas"])
async def test_the_rewrite_asks_for_a_structured_reply_over_http(reject: bool) -> None:
    # Issue 27 §2: where the model takes a JSON schema, the rewrite is {"question": str}; a server
    # that refuses schemas (a 400) gets text for the rest of the node's life, asked for once.
    def reply(name: str, facts: list[str], schema: dict, label: str = "") -> dict:
        if name == "rewrite":
            return {"question": f"**Standalone question:** {STANDALONE}"}  # read under the same rules
        return default_structured_reply(name, facts, schema, label)

    with ChatServer(window=8192, structured_reply=reply, reject_response_format=reject) as server:
        model = ChatOpenAI(model="local-reader", base_url=server.base_url, api_key="not-needed", max_retries=0)
        builder = StateGraph(DocumentChatState)
        builder.add_node("analyse", create_document_node(model, create_rlm_graph(model, context_window=8192)))
        builder.add_edge(START, "analyse")
        app = builder.compile(checkpointer=InMemorySaver())
        config = {"configurable": {"thread_id": "http"}}
        await app.ainvoke({"messages": [HumanMessage("Who proposed first?")], "document": _refusal_document()}, config)
        for follow_up in ("And where did she refuse him?", "And when?"):
            state = await app.ainvoke({"messages": [HumanMessage(follow_up)]}, config)
        rewrites = [(r.response_format is not None, r.outcome) for r in _rewrite_requests(server)]
    message = state["messages"][-1]
    if reject:
        # The first rewrite's schema was refused, that call asked again as text; the next turn asks text at once.
        assert rewrites == [(True, "400"), (False, "200"), (False, "200")]
    else:
        assert rewrites == [(True, "200"), (True, "200")]
        assert message.additional_kwargs["rlm_question"] == STANDALONE
        assert "NEEDLE-0001 is HUNSFORD" in message.text
    assert not state["rlm_usage"].get("unparsed_replies")


async def test_a_rewrite_correction_that_would_not_fit_the_window_is_not_sent(frankenstein: str) -> None:
    # The rewrite prompt is filled with history; the correction (the bad reply's start and an
    # instruction, about 120 tokens) comes out of the reply's room, and with 32 reply tokens planned
    # it would leave too little for a question: the reply is reported unparsed at once.
    two_lines = "List every NEEDLE code.\nThis replaces 'they' with the NEEDLE codes. " + "Word " * 60
    model, app = small_chat(2048, 32, standalone=two_lines)
    config = {"configurable": {"thread_id": "tight"}}
    await app.ainvoke({"messages": [HumanMessage(QUESTION)], "document": frankenstein[:30_000]}, config)
    chatter = []
    for n in range(8):
        chatter += [HumanMessage(f"question {n}?"), AIMessage(f"answer {n} " + "the long answer goes on " * 60)]
    await app.aupdate_state(config, {"messages": chatter})
    state = await app.ainvoke({"messages": [HumanMessage("and what do they stand for?")]}, config)
    message = state["messages"][-1]
    assert len([p for p in model.prompts if "<follow_up>" in p]) == 1
    assert not any("could not be read" in p for p in model.prompts)  # no corrective retry was sent
    assert model.overflows == 0
    assert message.additional_kwargs["rlm_question"] == "and what do they stand for?"
    assert message.response_metadata["rlm_usage"]["unparsed_replies"] == 1


async def test_a_corrected_rewrite_over_http_is_capped_to_the_reply_room_left() -> None:
    # The corrective follow-up takes its tokens from the reply's room: the retry is sent with a
    # smaller max_tokens, so prompt and reply still fit the window the rewrite was planned for.
    replies = iter([{"question": "Here is the standalone question:"}, {"question": STANDALONE}])

    def reply(name: str, facts: list[str], schema: dict, label: str = "") -> dict:
        return next(replies) if name == "rewrite" else default_structured_reply(name, facts, schema, label)

    with ChatServer(window=8192, structured_reply=reply) as server:
        model = ChatOpenAI(model="local-reader", base_url=server.base_url, api_key="not-needed", max_retries=0)
        builder = StateGraph(DocumentChatState)
        builder.add_node("analyse", create_document_node(model, create_rlm_graph(model, context_window=8192)))
        builder.add_edge(START, "analyse")
        history = [HumanMessage("Who proposed first?"), AIMessage("Mr. Collins, then Darcy.")]
        payload = {"messages": [*history, HumanMessage("And where did she refuse him?")]}
        state = await builder.compile().ainvoke({**payload, "document": _refusal_document()})
        first, corrected = _rewrite_requests(server)
    assert state["messages"][-1].additional_kwargs["rlm_question"] == STANDALONE
    assert corrected.max_tokens is not None
    assert first.max_tokens is None or corrected.max_tokens < first.max_tokens

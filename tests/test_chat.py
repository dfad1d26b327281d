"""The document node in a MessagesState chat graph: attachments, follow-ups, threads."""

import base64

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from rlm_graph import DocumentChatState, create_document_node
from rlm_graph.chat import MISSING_DOCUMENT_MESSAGE, split_message
from rlm_graph.tokens import TiktokenCounter
from tests.fakes import PerfectReader, plant_needles

QUESTION = "List every NEEDLE code."


class Condenser(PerfectReader):
    """A perfect reader that rewrites follow-ups to a fixed standalone question."""

    standalone: str = "List every NEEDLE code, please."

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        if "<follow_up>" in messages[-1].text:
            with self._lock:
                self._prompts.append(messages[-1].text)
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
    text, facts, _ = plant_needles(frankenstein[:100_000], 3)
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

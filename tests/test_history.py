"""Issue 16: conversations longer than the window (create_history_hook, HistoryMiddleware)."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import create_react_agent

from rlm_graph import create_history_hook, create_rlm_graph
from tests.fakes import PerfectReader
from tests.threads import fact, scripted_thread

DIGEST = "<earlier_conversation>"


class CitingReader(PerfectReader):
    """A perfect reader that also repeats the message ids its prompt cites (the digest's ``Sources:``)."""

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        result = super()._answer(messages)
        prompt = "\n".join(m.text for m in messages)
        if relay := re.search(r"Reply to the user with exactly this text and nothing else:\n(.*)", prompt):
            return ChatResult(generations=[ChatGeneration(message=AIMessage(relay.group(1)))])
        sources = re.findall(r"Sources: (.*)", prompt)
        text = result.generations[0].message.text
        if sources:
            text += f" (from messages {sources[-1]})"
        return ChatResult(generations=[ChatGeneration(message=AIMessage(text))])


@pytest.fixture(scope="module")
def thread() -> list[BaseMessage]:
    return scripted_thread(400)


def _readers() -> tuple[CitingReader, PerfectReader]:
    return CitingReader(window=8192), PerfectReader(window=8192)


class ChatState(MessagesState):
    llm_input_messages: list


def _node_graph(chat: PerfectReader, reader: PerfectReader, checkpointer: Any = None):
    hook = create_history_hook(chat, create_rlm_graph(reader, mode="focused"))

    def respond(state: ChatState) -> dict:
        # The digest lives only in llm_input_messages; clearing it keeps it out of the turn's last checkpoint.
        return {"messages": [chat.invoke(state["llm_input_messages"])], "llm_input_messages": []}

    builder = StateGraph(ChatState)
    builder.add_node("history", hook)
    builder.add_node("respond", respond)
    builder.add_edge(START, "history")
    builder.add_edge("history", "respond")
    builder.add_edge("respond", END)
    return builder.compile(checkpointer=checkpointer)


def test_thread_is_about_150k_tokens(thread):
    from rlm_graph.tokens import TiktokenCounter

    assert len(thread) == 800
    assert 130_000 < sum(TiktokenCounter().count_many([m.text for m in thread])) < 170_000


def test_fact_from_turn_7_is_recalled_at_turn_400_with_the_turn_cited(thread):
    chat, reader = _readers()
    graph = _node_graph(chat, reader)
    events = []
    result = None
    for mode, chunk in graph.stream(
        {"messages": [*thread, HumanMessage("Remind me: what was NEEDLE-0007?", id="q")]},
        stream_mode=["custom", "values"],
    ):
        if mode == "custom":
            events.append(chunk)
        else:
            result = chunk
    answer = result["messages"][-1].text
    assert fact(7) in answer
    assert "turn-007-user" in answer
    assert reader.prompts, "the older turns were read"
    assert chat.overflows == 0
    assert reader.overflows == 0
    history = [e for e in events if e.get("stage") == "history"]
    assert re.fullmatch(r"Looking back through 7\d\d earlier messages", next(e["message"] for e in history))
    assert history[-1]["status"] == "done"
    assert "turn-007-user" in history[-1]["message"]


def test_question_about_recent_turns_makes_no_analysis_call(thread):
    chat, reader = _readers()
    graph = _node_graph(chat, reader)
    out = create_history_hook(chat, create_rlm_graph(reader, mode="focused")).invoke(
        {"messages": [*thread, HumanMessage("Which meeting room did I just mention?")]}
    )
    sent = "\n".join(m.text for m in out["llm_input_messages"])
    assert "BLUE-ROOM-42" in sent
    assert DIGEST not in sent
    graph.invoke({"messages": [*thread, HumanMessage("Which meeting room did I just mention?")]})
    assert reader.prompts == []
    assert len(chat.prompts) == 1
    assert chat.overflows == 0


def test_oversized_latest_message_gets_a_clear_reply(thread):
    chat, reader = _readers()
    huge = HumanMessage("Please read this. " + "All work and no play makes Jack a dull boy. " * 2000)
    graph = _node_graph(chat, reader)
    answer = graph.invoke({"messages": [*thread[:40], huge]})["messages"][-1].text
    assert answer.startswith("Your message is too long for me to read (about ")
    assert "Please shorten it" in answer
    assert chat.overflows == 0
    assert reader.prompts == []


def test_works_as_pre_model_hook_of_create_react_agent(thread):
    chat, reader = _readers()
    hook = create_history_hook(chat, create_rlm_graph(reader, mode="focused"))
    agent = create_react_agent(chat, [], pre_model_hook=hook, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    question = HumanMessage("And what was NEEDLE-0007 again?", id="q")
    state = agent.invoke({"messages": [*thread, question]}, config)
    assert fact(7) in state["messages"][-1].text
    assert "turn-007-user" in state["messages"][-1].text
    # Nothing deleted, nothing added but the reply: the digest is not a stored message.
    assert [m.id for m in state["messages"][:-1]] == [m.id for m in [*thread, question]]
    assert not any(DIGEST in m.text for m in state["messages"])
    assert chat.overflows == 0


def test_works_as_middleware_of_langchain_create_agent(thread):
    pytest.importorskip("langchain")
    from langchain.agents import create_agent

    from rlm_graph.history_middleware import HistoryMiddleware

    chat, reader = _readers()
    middleware = HistoryMiddleware(chat, create_rlm_graph(reader, mode="focused"))
    agent = create_agent(chat, middleware=[middleware], checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    state = agent.invoke({"messages": [*thread, HumanMessage("What was NEEDLE-0007?", id="q")]}, config)
    assert fact(7) in state["messages"][-1].text
    assert "turn-007-user" in state["messages"][-1].text
    assert len(state["messages"]) == len(thread) + 2
    assert not any(DIGEST in m.text for m in state["messages"])
    # An oversized message is answered without calling the model.
    calls = len(chat.prompts)
    huge = HumanMessage("x " * 20000)
    state = agent.invoke({"messages": [huge]}, config)
    assert state["messages"][-1].text.startswith("Your message is too long for me to read")
    assert len(chat.prompts) == calls


async def test_checkpoints_do_not_grow_with_the_digest(thread):
    chat, reader = _readers()
    saver = InMemorySaver()
    graph = _node_graph(chat, reader, checkpointer=saver)
    config = {"configurable": {"thread_id": "long"}}
    await graph.ainvoke({"messages": list(thread)[:-1]}, config)  # seed without a model reply to the last
    sizes = []
    for number in (7, 3, 20):
        state = await graph.ainvoke({"messages": [HumanMessage(f"What was NEEDLE-{number:04d}?")]}, config)
        assert fact(number) in state["messages"][-1].text
        checkpoint = saver.get_tuple(config).checkpoint
        sizes.append(len(saver.serde.dumps_typed(checkpoint["channel_values"].get("messages"))[1]))
        assert checkpoint["channel_values"].get("llm_input_messages") == []
    assert not any(DIGEST in m.text for m in state["messages"])
    # Each turn adds its question and reply (a few hundred bytes), not a digest of up to 600 tokens.
    assert max(b - a for a, b in itertools.pairwise(sizes)) < 1500


def test_recent_turns_prefix_is_stable_between_turns(thread):
    chat, _ = _readers()
    hook = create_history_hook(chat, look_back="never")
    starts = []
    previous: list[BaseMessage] | None = None
    kept_prefix = 0
    for end in range(700, 740, 2):  # twenty consecutive turns
        sent = hook.invoke({"messages": [*thread[:end], HumanMessage("ok?", id=f"q{end}")]})["llm_input_messages"]
        starts.append(sent[0].id)
        if previous is not None and sent[0].id == previous[0].id:
            kept_prefix += 1
            assert [m.id for m in sent[: len(previous) - 1]] == [m.id for m in previous[:-1]]
        previous = sent
    assert len(set(starts)) <= 6
    assert kept_prefix >= 14


def test_pre_model_hook_relays_the_too_long_reply_without_overflow(thread):
    chat, reader = _readers()
    hook = create_history_hook(chat, create_rlm_graph(reader, mode="focused"))
    agent = create_react_agent(chat, [], pre_model_hook=hook)
    huge = HumanMessage("word " * 30000)
    state = agent.invoke({"messages": [*thread[:10], huge]})
    assert state["messages"][-1].text.startswith("Your message is too long for me to read")
    assert chat.overflows == 0
    assert reader.prompts == []

"""Issue 16: conversations longer than the window (create_history_hook, HistoryMiddleware)."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
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


# r32: only the latest user message can be "too long"; this turn's tool results and AI messages are cut to fit.
PAGE = "NEEDLE-0042 is REVENUE. " + "Revenue rose. " * 4000  # about 12,000 tokens, more than the 8K window
FETCH = {"name": "fetch", "args": {"url": "example.com/r"}, "id": "c1", "type": "tool_call"}
ASKED = "What does the report at example.com/r say about revenue?"


def _fetched(*pages: str, said: str = "") -> list[BaseMessage]:
    calls = [{**FETCH, "id": f"c{n}"} for n in range(len(pages))]
    return [
        HumanMessage(ASKED, id="u1"),
        AIMessage(said, id="a1", tool_calls=calls),
        *(ToolMessage(page, tool_call_id=f"c{n}", id=f"t{n}") for n, page in enumerate(pages)),
    ]


def test_a_large_tool_result_is_cut_with_a_note_not_blamed_on_the_user():
    chat, reader = _readers()
    hook = create_history_hook(chat, create_rlm_graph(reader, mode="focused"))
    messages = _fetched(PAGE)
    sent = hook.invoke({"messages": messages})["llm_input_messages"]
    assert [m.id for m in sent] == ["u1", "a1", "t0"]
    assert sent[0].text == ASKED
    assert sent[1].tool_calls == messages[1].tool_calls
    tool = sent[2]
    assert isinstance(tool, ToolMessage)
    assert tool.tool_call_id == "c0"
    assert tool.text.startswith("NEEDLE-0042 is REVENUE. Revenue rose.")
    assert len(tool.text) < len(PAGE)
    assert "[Cut to fit the model's window: this tool result is about 12,0" in tool.text
    assert not any("too long" in m.text for m in sent)
    reply = chat.invoke(sent)
    assert chat.overflows == 0
    assert "NEEDLE-0042 is REVENUE" in reply.text
    assert messages[2].text == PAGE  # the thread itself is not changed


def test_several_large_results_and_a_long_ai_message_of_this_turn_share_the_window():
    chat, reader = _readers()
    hook = create_history_hook(chat, create_rlm_graph(reader, mode="focused"))
    small = "NEEDLE-0007 is SMALL."
    thinking = "Let me think about this at length. " * 1500  # about 12,000 tokens of this turn's AI text
    messages = _fetched(PAGE, small, PAGE.replace("0042", "0043"), said=thinking)
    sent = hook.invoke({"messages": messages})["llm_input_messages"]
    assert [m.id for m in sent] == ["u1", "a1", "t0", "t1", "t2"]
    assert sent[0].text == ASKED
    assert sent[3].text == small  # a result that is small is left whole
    cut = [sent[1], sent[2], sent[4]]
    assert all("[Cut to fit the model's window" in m.text for m in cut)
    sizes = [chat.get_num_tokens(m.text) for m in cut]
    assert max(sizes) - min(sizes) < 100  # the large ones are cut to about the same size
    chat.invoke(sent)
    assert chat.overflows == 0


def test_the_agent_answers_from_a_cut_tool_result():
    pytest.importorskip("langchain")
    from langchain.agents import create_agent
    from langchain_core.tools import tool

    from rlm_graph.history_middleware import HistoryMiddleware

    @tool
    def fetch(url: str) -> str:
        """Fetch a web page."""
        return PAGE

    class ToolCaller(CitingReader):
        def bind_tools(self, tools: Any, **kw: Any) -> ToolCaller:
            return self

        def _answer(self, messages: list[BaseMessage]) -> ChatResult:
            if not any(m.type == "tool" for m in messages):
                return ChatResult(generations=[ChatGeneration(message=AIMessage("", tool_calls=[FETCH]))])
            return super()._answer(messages)

    chat = ToolCaller(window=8192)
    middleware = HistoryMiddleware(chat, create_rlm_graph(PerfectReader(window=8192), mode="focused"))
    agent = create_agent(chat, tools=[fetch], middleware=[middleware])
    reply = agent.invoke({"messages": [HumanMessage(ASKED)]})["messages"][-1].text
    assert "too long" not in reply
    assert "NEEDLE-0042 is REVENUE" in reply
    assert chat.overflows == 0


def test_a_large_earlier_ai_message_is_not_blamed_on_the_user():
    chat, reader = _readers()
    hook = create_history_hook(chat, create_rlm_graph(reader, mode="focused"))
    long_answer = AIMessage("NEEDLE-0009 is EARLY. " + "As I said before, revenue rose. " * 2000, id="a0")
    messages = [HumanMessage("Summarise the report.", id="u0"), long_answer, HumanMessage("And costs?", id="u1")]
    sent = hook.invoke({"messages": messages})["llm_input_messages"]
    assert not any("too long" in m.text for m in sent)
    assert sent[-1].text.startswith("And costs?")
    chat.invoke(sent)
    assert chat.overflows == 0


def test_a_cut_tool_result_leaves_room_for_the_digest_of_older_turns(thread):
    chat, reader = _readers()
    hook = create_history_hook(chat, create_rlm_graph(reader, mode="focused"))
    asked = HumanMessage("And what was NEEDLE-0007 again?", id="q")
    messages = [*thread, asked, AIMessage("", id="a", tool_calls=[FETCH]), ToolMessage(PAGE, tool_call_id="c1", id="t")]
    sent = hook.invoke({"messages": messages})["llm_input_messages"]
    latest = next(m for m in sent if m.id == "q")
    assert DIGEST in latest.text  # the older turns were still read...
    assert fact(7) in latest.text
    assert "[Cut to fit the model's window" in sent[-1].text  # ...and the tool result cut around the digest's room
    chat.invoke(sent)
    assert chat.overflows == 0


class LongAnswerReader(PerfectReader):
    """A perfect reader whose answers (not its readings) go on for a few hundred words after the facts."""

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        result = super()._answer(messages)
        if any("<document_part start=" in m.text for m in messages):
            return result
        text = result.generations[0].message.text + " " + " ".join(["More detail follows."] * 200)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(text))])


def test_a_digest_cut_to_fit_says_so(thread):
    # The analysis answer is longer than digest_tokens: the chat model sees its start and a
    # note that it was cut (never a silently shortened answer), and the progress stream says so.
    chat, reader = CitingReader(window=8192), LongAnswerReader(window=8192)
    hook = create_history_hook(chat, create_rlm_graph(reader, mode="focused"), digest_tokens=200)
    builder = StateGraph(ChatState)
    builder.add_node("history", hook)
    builder.add_edge(START, "history")
    builder.add_edge("history", END)
    events, sent = [], []
    for mode, chunk in builder.compile().stream(
        {"messages": [*thread, HumanMessage("Remind me: what was NEEDLE-0007?", id="q")]},
        stream_mode=["custom", "values"],
    ):
        if mode == "custom":
            events.append(chunk)
        else:
            sent = chunk.get("llm_input_messages") or sent
    latest = next(m for m in sent if m.id == "q")
    digest = latest.text[latest.text.index(DIGEST) :]
    assert fact(7) in digest
    assert re.search(r"\[Cut to fit the model's window: this answer about the earlier messages is about [\d,]+ tokens; "
                     r"only its first [\d,]+ are shown\.\]", digest)
    assert "</earlier_conversation>" in digest
    cut = [e for e in events if e.get("stage") == "history" and "cut to its first" in e["message"]]
    assert len(cut) == 1
    from rlm_graph.tokens import TiktokenCounter

    assert TiktokenCounter().count(digest) <= 200

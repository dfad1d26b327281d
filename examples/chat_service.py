"""A complete chat service: router, document analysis and small talk, with a checkpointer.

Offline it runs on the bundled extractive model; with OPENAI_API_KEY or
OPENAI_BASE_URL it uses ChatOpenAI (RLM_MODEL names the model, RLM_CONTEXT_WINDOW
gives the window of a model LangChain has no profile for; see ``model_from_env``).
RLM_MODE=navigate lets a tool-calling model explore long documents with tools
(see docs/navigate.md); the default reads every part.

    python examples/chat_service.py examples/pride_and_prejudice.txt \
        "How much a year was Mr. Bennet's estate worth?" "Who inherits it?" "thanks!"

Each argument after the file is one turn of the same conversation (thread).
Questions about the conversation itself ("what did I say earlier about ...") are
answered by the chat model with ``create_history_hook``: recent turns verbatim,
older turns read only when needed and cited by message id.
``graph`` below is what ``langgraph.json`` serves to ``langgraph dev`` and Studio.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import uuid
from typing import Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.constants import TAG_NOSTREAM
from langgraph.graph import END, START, StateGraph
from langgraph.types import Checkpointer

from rlm_graph import (
    DocumentChatState,
    ExtractiveChatModel,
    create_document_node,
    create_history_hook,
    create_rlm_graph,
    model_from_env,
)
from rlm_graph.chat_messages import split_message
from rlm_graph.citations import describe_citation, mark_answer
from rlm_graph.file_input import read_file
from rlm_graph.reasoning import visible_text

SMALL_TALK = re.compile(
    r"^\s*(hi|hello|hey|thanks|thank you|thx|good (morning|evening|night)|bye|goodbye|ok|okay|cool|great)\b[\s!.?]*$",
    re.IGNORECASE,
)
EARLIER = re.compile(
    r"\b(earlier|remind me|what was|did (i|we|you) (say|mention|tell|decide|agree)"
    r"|we (said|decided|agreed)|you said)\b",
    re.IGNORECASE,
)
ROUTER_PROMPT = (
    "Decide whether the user's last message asks something about their document, or is small talk "
    "(greetings, thanks, chit-chat) or about this conversation itself (what was said earlier). "
    "Reply with exactly one word: DOCUMENT or CHAT."
)


def build_chat_graph(model: BaseChatModel | None = None, checkpointer: Checkpointer = None, mode: str | None = None):
    """Build the chat graph.

    Args:
        model: Chat model; defaults to ``model_from_env()``.
        checkpointer: Checkpointer for conversations across requests (``thread_id``).
        mode: Reading mode of the analysis graph; defaults to ``RLM_MODE`` or ``"full"``.

    Returns:
        The compiled chat graph.
    """
    model = model or model_from_env()[0]
    offline = isinstance(model, ExtractiveChatModel)
    # Fits a thread of any length into the model's window; older turns are read only when asked about.
    history = create_history_hook(model)
    # Calls whose reply is not what the user reads carry LangGraph's nostream tag, so a chat UI
    # streaming with stream_mode="messages" shows only answers.
    router = model.with_config(tags=[TAG_NOSTREAM], run_name="route")
    quoter = model.with_config(tags=[TAG_NOSTREAM], run_name="quote earlier messages")

    def route(state: DocumentChatState) -> Literal["analyse_document", "small_talk"]:
        latest = state["messages"][-1]
        text, attachments, _ = split_message(latest)
        if attachments:
            return "analyse_document"
        if offline or not text:
            return "small_talk" if SMALL_TALK.match(text) or EARLIER.search(text) else "analyse_document"
        # A reasoning model may think first (<think>...</think>): the verdict is after that.
        verdict = visible_text(router.invoke([SystemMessage(ROUTER_PROMPT), HumanMessage(text)])).strip().upper()
        return "small_talk" if verdict.startswith("CHAT") else "analyse_document"

    async def small_talk(state: DocumentChatState) -> dict:
        text = split_message(state["messages"][-1])[0]
        if offline and not EARLIER.search(text):
            return {"messages": [AIMessage("Happy to help. Ask me anything about your document.")]}
        sent = (await history.ainvoke(state))["llm_input_messages"]
        if offline:  # the extractive model quotes the digest's best sentences, then its sources
            digest = sent[-1].text[len(text) :]
            sources = re.findall(r"^Sources: (.*)$", digest, re.MULTILINE)
            reply = await quoter.ainvoke([HumanMessage(f"<document>{digest}</document><question>{text}</question>")])
            cited = f" (messages {sources[-1]})" if sources and sources[-1] != "none" else ""
            return {"messages": [AIMessage(reply.text + cited)]}
        system = SystemMessage(
            "You are a friendly assistant for questions about the user's documents and this conversation. "
            "Be brief; when you use the earlier conversation, name the message ids you rely on."
        )
        return {"messages": [await model.ainvoke([system, *sent])]}

    builder = StateGraph(DocumentChatState)
    mode = mode or os.environ.get("RLM_MODE") or "full"
    analysis = None if mode == "full" else create_rlm_graph(model, mode=mode)
    builder.add_node("analyse_document", create_document_node(model, analysis))
    builder.add_node("small_talk", small_talk)
    builder.add_conditional_edges(START, route, ["analyse_document", "small_talk"])
    builder.add_edge("analyse_document", END)
    builder.add_edge("small_talk", END)
    return builder.compile(checkpointer=checkpointer, name="chat")


graph = build_chat_graph()


async def main(path: str, turns: list[str]) -> None:
    # The same reading as the CLI's, so the same file gets the same citation offsets.
    document = read_file(path).text
    model, note = model_from_env()
    print(note)
    chat = build_chat_graph(model, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": uuid.uuid4().hex}}
    for number, turn in enumerate(turns):
        payload: dict = {"messages": [HumanMessage(turn)]}
        if number == 0:
            payload["document"] = document
        result = await chat.ainvoke(payload, config)
        reply = result["messages"][-1]
        print(f"\nuser: {turn}")
        standalone = reply.additional_kwargs.get("rlm_question")
        if standalone and standalone != turn:
            print(f"(read as: {standalone})")
        citations = reply.additional_kwargs.get("citations", [])
        print(f"assistant: {mark_answer(reply.text, citations)}")
        for number, citation in enumerate(citations, start=1):
            print(f"  [{number}] {describe_citation(citation)}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:]))

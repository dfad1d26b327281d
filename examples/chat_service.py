"""A complete chat service: router, document analysis and small talk, with a checkpointer.

Offline it runs on the bundled extractive model; with OPENAI_API_KEY (or
OPENAI_BASE_URL, and RLM_MODEL for the model name) it uses ChatOpenAI.

    python examples/chat_service.py examples/pride_and_prejudice.txt \
        "How much a year was Mr. Bennet's estate worth?" "Who inherits it?" "thanks!"

Each argument after the file is one turn of the same conversation (thread).
``graph`` below is what ``langgraph.json`` serves to ``langgraph dev`` and Studio.
"""

from __future__ import annotations

import asyncio
import re
import sys
import uuid
from typing import Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, trim_messages
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Checkpointer

from rlm_graph import DocumentChatState, ExtractiveChatModel, create_document_node, model_from_env
from rlm_graph.chat_messages import split_message

SMALL_TALK = re.compile(
    r"^\s*(hi|hello|hey|thanks|thank you|thx|good (morning|evening|night)|bye|goodbye|ok|okay|cool|great)\b[\s!.?]*$",
    re.IGNORECASE,
)
ROUTER_PROMPT = (
    "Decide whether the user's last message asks something about their document or is small talk "
    "(greetings, thanks, chit-chat). Reply with exactly one word: DOCUMENT or CHAT."
)


def build_chat_graph(model: BaseChatModel | None = None, checkpointer: Checkpointer = None):
    """Build the chat graph.

    Args:
        model: Chat model; defaults to ``model_from_env()``.
        checkpointer: Checkpointer for conversations across requests (``thread_id``).

    Returns:
        The compiled chat graph.
    """
    model = model or model_from_env()[0]
    offline = isinstance(model, ExtractiveChatModel)

    def route(state: DocumentChatState) -> Literal["analyse_document", "small_talk"]:
        latest = state["messages"][-1]
        text, attachments, _ = split_message(latest)
        if attachments:
            return "analyse_document"
        if offline or not text:
            return "small_talk" if SMALL_TALK.match(text) else "analyse_document"
        verdict = model.invoke([SystemMessage(ROUTER_PROMPT), HumanMessage(text)]).text.strip().upper()
        return "small_talk" if verdict.startswith("CHAT") else "analyse_document"

    async def small_talk(state: DocumentChatState) -> dict:
        if offline:
            return {"messages": [AIMessage("Happy to help. Ask me anything about your document.")]}
        history = trim_messages(
            [m for m in state["messages"] if isinstance(m, (HumanMessage, AIMessage))],
            max_tokens=12,
            token_counter=len,  # count messages: the last few turns are enough for chit-chat
            strategy="last",
            start_on="human",
        )
        text_only = [type(m)(split_message(m)[0] if isinstance(m, HumanMessage) else m.text) for m in history]
        system = SystemMessage("You are a friendly assistant for questions about the user's documents. Be brief.")
        return {"messages": [await model.ainvoke([system, *text_only])]}

    builder = StateGraph(DocumentChatState)
    builder.add_node("analyse_document", create_document_node(model))
    builder.add_node("small_talk", small_talk)
    builder.add_conditional_edges(START, route, ["analyse_document", "small_talk"])
    builder.add_edge("analyse_document", END)
    builder.add_edge("small_talk", END)
    return builder.compile(checkpointer=checkpointer, name="chat")


graph = build_chat_graph()


async def main(path: str, turns: list[str]) -> None:
    with open(path, encoding="utf-8") as handle:
        document = handle.read()
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
        print(f"assistant: {reply.text}")
        for citation in reply.additional_kwargs.get("citations", []):
            print(f"  cites characters {citation['start']}-{citation['end']}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:]))

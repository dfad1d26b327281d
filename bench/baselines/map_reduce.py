"""Baseline (b): LangGraph's map-reduce summarization pattern, minimally.

Token-sized chunks are summarized in parallel with ``Send``; then, while the
summaries exceed ``token_max``, they are split into groups under ``token_max`` and
each group is reduced (the collapse loop); a final call reduces what is left.
Overflowing calls are counted and their output dropped.
"""

import operator
from typing import Annotated, TypedDict

from langchain_core.exceptions import ContextOverflowError
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from rlm_graph.tokens import cl100k_base

MAP_PROMPT = (
    "Question: {question}\n\nWrite a concise summary of the following, keeping what answers the question:\n{text}"
)
REDUCE_PROMPT = (
    "Question: {question}\n\nThe following is a set of summaries:\n{text}\n\n"
    "Take these and distill them into a final, consolidated summary that answers the question."
)


class State(TypedDict):
    question: str
    chunks: list[str]
    summaries: Annotated[list[str], operator.add]
    collapsed: list[str]
    answer: str
    overflows: Annotated[int, operator.add]


def build(model: BaseChatModel, token_max: int):
    """Compile the map-reduce graph for ``model`` with the collapse threshold ``token_max``."""
    encoding = cl100k_base()

    def length(texts: list[str]) -> int:
        return sum(len(encoding.encode_ordinary(t)) for t in texts)

    async def call(question: str, template: str, text: str) -> tuple[str, int]:
        try:
            reply = await model.ainvoke([HumanMessage(template.format(question=question, text=text))])
            return reply.text, 0
        except ContextOverflowError:
            return "", 1

    def fan_out(state: State) -> list[Send]:
        return [Send("summarize", {"question": state["question"], "text": chunk}) for chunk in state["chunks"]]

    async def summarize(payload: dict) -> dict:
        text, overflow = await call(payload["question"], MAP_PROMPT, payload["text"])
        return {"summaries": [text], "overflows": overflow}

    def collect(state: State) -> dict:
        return {"collapsed": state["summaries"]}

    async def collapse(state: State) -> dict:
        groups: list[list[str]] = [[]]
        for summary in state["collapsed"]:
            if groups[-1] and length([*groups[-1], summary]) > token_max:
                groups.append([])
            groups[-1].append(summary)
        overflows = 0
        reduced = []
        for group in groups:
            text, overflow = await call(state["question"], REDUCE_PROMPT, "\n\n".join(group))
            reduced.append(text)
            overflows += overflow
        return {"collapsed": reduced, "overflows": overflows}

    def should_collapse(state: State) -> str:
        return "collapse" if length(state["collapsed"]) > token_max else "reduce"

    async def reduce(state: State) -> dict:
        text, overflow = await call(state["question"], REDUCE_PROMPT, "\n\n".join(state["collapsed"]))
        return {"answer": text, "overflows": overflow}

    builder = StateGraph(State)
    builder.add_node("summarize", summarize)
    builder.add_node("collect", collect)
    builder.add_node("collapse", collapse)
    builder.add_node("reduce", reduce)
    builder.add_conditional_edges(START, fan_out, ["summarize"])
    builder.add_edge("summarize", "collect")
    builder.add_conditional_edges("collect", should_collapse, ["collapse", "reduce"])
    builder.add_conditional_edges("collapse", should_collapse, ["collapse", "reduce"])
    builder.add_edge("reduce", END)
    return builder.compile()


def chunks_of(document: str, chunk_tokens: int) -> list[str]:
    """Token-sized chunks, as ``CharacterTextSplitter.from_tiktoken_encoder`` would give roughly."""
    encoding = cl100k_base()
    tokens = encoding.encode_ordinary(document)
    return [encoding.decode(tokens[i : i + chunk_tokens]) for i in range(0, len(tokens), chunk_tokens)]

"""The tool objects bound to the root model and run by the ``ToolNode``, with their contract.

Names and arguments are a contract (clients and tests rely on them): ``search(query, k=5)``,
``grep(pattern, max_hits=20)``, ``peek(start, end)``, ``ask(question, spans)``,
``ask_all(question, output="text")`` and ``final(answer, citations)``.
"""

from __future__ import annotations

from typing import Literal

from langchain_core.tools import BaseTool, StructuredTool
from langgraph.prebuilt import ToolRuntime
from langgraph.types import Command
from pydantic import BaseModel, Field

from rlm_graph.navigate.tools import Navigation
from rlm_graph.steps import arun_steps, run_steps

__all__ = ["FinalArgs", "final_tool", "make_tools"]


class FinalArgs(BaseModel):
    """End the run with this answer."""

    answer: str = Field(description="The answer to the question.")
    citations: list[list[int]] = Field(
        default_factory=list, description="Character ranges [start, end] that the tools returned and that support it."
    )


def final_tool() -> StructuredTool:
    """The ``final`` tool's schema (the navigate node acts on it; it never runs in the ToolNode)."""

    def final(answer: str, citations: list[list[int]] | None = None) -> str:
        return answer

    return StructuredTool.from_function(
        final,
        name="final",
        description="End the run with your answer and its supporting ranges.",
        args_schema=FinalArgs,
    )


def make_tools(navigation: Navigation) -> list[BaseTool]:
    """The ToolNode's tools (``final`` is bound to the model but handled by the navigate node).

    Each tool's body is written once, as steps; its sync and async entry points drive them.
    """

    def search(query: str, runtime: ToolRuntime, k: int = 5) -> Command:
        """The k spans most relevant to the query (BM25): start, end, score and a snippet."""
        return run_steps(navigation.search(query, k, runtime))

    async def asearch(query: str, runtime: ToolRuntime, k: int = 5) -> Command:
        return await arun_steps(navigation.search(query, k, runtime))

    def grep(pattern: str, runtime: ToolRuntime, max_hits: int = 20) -> Command:
        """Regular-expression matches: start, end and the matching line; the match time is bounded."""
        return run_steps(navigation.grep(pattern, max_hits, runtime))

    async def agrep(pattern: str, runtime: ToolRuntime, max_hits: int = 20) -> Command:
        return await arun_steps(navigation.grep(pattern, max_hits, runtime))

    def peek(start: int, end: int, runtime: ToolRuntime) -> Command:
        """The text of the character range [start, end), cut to fit the window (saying so when cut)."""
        return run_steps(navigation.peek(start, end, runtime))

    async def apeek(start: int, end: int, runtime: ToolRuntime) -> Command:
        return await arun_steps(navigation.peek(start, end, runtime))

    def ask(question: str, spans: list[list[int]], runtime: ToolRuntime) -> Command:
        """A reader answers the question on each span [start, end], in parallel; large spans are read in parts."""
        return run_steps(navigation.ask(question, spans, runtime))

    async def aask(question: str, spans: list[list[int]], runtime: ToolRuntime) -> Command:
        return await arun_steps(navigation.ask(question, spans, runtime))

    def ask_all(
        question: str, runtime: ToolRuntime, output: Literal["text", "count", "tally", "list"] = "text"
    ) -> Command:
        """The whole document read with the question; count, tally and list are merged exactly in code."""
        return run_steps(navigation.ask_all(question, output, runtime))

    async def aask_all(
        question: str, runtime: ToolRuntime, output: Literal["text", "count", "tally", "list"] = "text"
    ) -> Command:
        return await arun_steps(navigation.ask_all(question, output, runtime))

    return [
        StructuredTool.from_function(search, coroutine=asearch),
        StructuredTool.from_function(grep, coroutine=agrep),
        StructuredTool.from_function(peek, coroutine=apeek),
        StructuredTool.from_function(ask, coroutine=aask),
        StructuredTool.from_function(ask_all, coroutine=aask_all),
    ]

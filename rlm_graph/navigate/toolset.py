"""The tool objects bound to the root model and run by the ``ToolNode``, with their contract.

Names and arguments are a contract (clients and tests rely on them): ``search(query, k=5)``,
``grep(pattern, max_hits=20)``, ``peek(start, end)``, ``ask(question, spans)``,
``ask_all(question, output="text")`` and ``final(answer, citations)``.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Annotated, Any, Literal

from langchain_core.tools import BaseTool, StructuredTool
from langgraph.prebuilt import ToolRuntime
from langgraph.types import Command
from pydantic import BaseModel, BeforeValidator, Field

from rlm_graph.navigate.tools import Navigation
from rlm_graph.steps import arun_steps, run_steps

__all__ = ["SPAN_FORM", "FinalArgs", "final_tool", "make_tools", "read_spans"]

SPAN_FORM = 'each span is [start, end] in character offsets, such as [0, 9741] (or the text "characters 0-9741")'
"""How a span is written, as a refused argument's message tells the model."""

# "characters 0-9741", "0-9741", "[0, 9741]", "chars 10 to 20": two offsets and nothing else
# (a number in other words, such as "chapter 3 to 5", is not an offset and is refused).
_SPAN_TEXT = re.compile(
    r"^\s*(?:(?:characters?|chars?|offsets?|span)\s*)?[\[(]?\s*(\d+)\s*(?:-|–|—|:|,|\.\.|to)\s*(\d+)\s*[\])]?\s*$",
    re.IGNORECASE,
)


def _offset(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _span(item: Any) -> list[int]:
    if isinstance(item, str):
        found = _SPAN_TEXT.match(item)
        pair: tuple[Any, Any] | None = (found.group(1), found.group(2)) if found else None
    elif isinstance(item, dict):
        pair = (item["start"], item["end"]) if set(item) == {"start", "end"} else None
    elif isinstance(item, list | tuple) and len(item) == 2:
        pair = (item[0], item[1])
    else:
        pair = None
    offsets = [_offset(value) for value in pair] if pair else [None]
    if None in offsets:
        msg = f"{SPAN_FORM}; got {item!r}"
        raise ValueError(msg)
    return offsets  # type: ignore[return-value]


def read_spans(value: Any) -> list[list[int]]:
    """The ``[start, end]`` spans a model wrote, in any unambiguous form.

    Models write spans as pairs, as ``{"start": ..., "end": ...}`` objects, as text such as
    ``"characters 0-9741"``, one span without its list, or the whole list as a JSON string.
    Each is read as the pair it names; anything else is refused with the form to use, which
    the ``ToolNode`` gives back to the model.

    Args:
        value: The ``spans`` argument as the model wrote it.

    Returns:
        ``[start, end]`` pairs (not yet checked against the document).

    Raises:
        ValueError: If a span is not in any of those forms.
    """
    if isinstance(value, str) and value.strip().startswith("["):
        # Not JSON after all ("[0-9741]"): read as text below.
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    if isinstance(value, str | dict):
        return [_span(value)]
    if isinstance(value, list | tuple) and len(value) == 2 and all(_offset(v) is not None for v in value):
        return [_span(value)]  # one span written without its list
    if not isinstance(value, list | tuple):
        msg = f"spans must be a list of spans: {SPAN_FORM}; got {value!r}"
        raise ValueError(msg)
    return [_span(item) for item in value]


Spans = Annotated[list[list[int]], BeforeValidator(read_spans)]
"""The ``spans`` argument: advertised as ``[[start, end], ...]``, read in any form :func:`read_spans` takes."""



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

    def ask(question: str, spans: Spans, runtime: ToolRuntime) -> Command:
        """A reader answers the question on each span [start, end], in parallel; large spans are read in parts."""
        return run_steps(navigation.ask(question, spans, runtime))

    async def aask(question: str, spans: Spans, runtime: ToolRuntime) -> Command:
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

"""Scripted tool-calling chat models for navigate mode.

A :class:`ScriptedNavigator` answers calls that carry bound tools from its script (each
step sees the conversation and returns tool calls); calls without tools (the readers of
``ask`` and ``ask_all``) go to an inner reader such as :class:`tests.fakes.PerfectReader`.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.exceptions import ContextOverflowError
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import PrivateAttr

from rlm_graph.tokens import TiktokenCounter
from tests.fakes import Cl100kWindow, PerfectReader

Step = Callable[[list[BaseMessage]], AIMessage]
_ids = itertools.count(1)


def call(name: str, **args: Any) -> dict[str, Any]:
    """One tool call."""
    return {"name": name, "args": args, "id": f"call_{next(_ids)}", "type": "tool_call"}


def calls(*tool_calls: dict[str, Any]) -> Step:
    """A step that makes these tool calls whatever it sees."""
    return lambda _messages: AIMessage("", tool_calls=list(tool_calls))


def tool_results(messages: Sequence[BaseMessage]) -> list[str]:
    """The tool results so far, oldest first."""
    return [str(m.content) for m in messages if isinstance(m, ToolMessage)]


def spans_in(text: str) -> list[list[int]]:
    """Every ``[start-end]`` span a tool result names."""
    return [[int(a), int(b)] for a, b in re.findall(r"\[(\d+)-(\d+)\]", text)]


class ScriptedNavigator(Cl100kWindow, BaseChatModel):
    """Replies to tool-bound calls from ``script`` (one step per call); other calls go to ``reader``."""

    reader: BaseChatModel
    script: list[Any]
    window: int = 8192
    fallback: str = "I could not finish."

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _root_prompts: list[list[BaseMessage]] = PrivateAttr(default_factory=list)
    _bound: list[dict[str, Any]] = PrivateAttr(default_factory=list)
    _root_tokens: list[int] = PrivateAttr(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted-navigator"

    @property
    def bound_tools(self) -> list[dict[str, Any]]:
        return list(self._bound)

    @property
    def root_prompts(self) -> list[list[BaseMessage]]:
        return list(self._root_prompts)

    @property
    def root_tokens(self) -> list[int]:
        return list(self._root_tokens)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        self._bound[:] = formatted
        return self.bind(tools=formatted, **kwargs)

    def _root(self, messages: list[BaseMessage]) -> ChatResult:
        counter = TiktokenCounter(exact=True)
        texts = [m.text + (str(m.tool_calls) if isinstance(m, AIMessage) else "") for m in messages]
        tokens = sum(counter.count_many(texts))
        with self._lock:
            self._root_prompts.append(list(messages))
            self._root_tokens.append(tokens)
            number = len(self._root_prompts) - 1
        if tokens > self.window:
            msg = f"context_length_exceeded: root prompt of {tokens} tokens > {self.window}"
            raise ContextOverflowError(msg)
        step = self.script[number] if number < len(self.script) else None
        if step is None:
            reply = AIMessage(self.fallback)
        elif isinstance(step, BaseException):
            raise step
        else:
            reply = step(list(messages))
        return ChatResult(generations=[ChatGeneration(message=reply)])

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        if kw.get("tools"):
            return self._root(messages)
        return self.reader._generate(messages, stop=stop, **kw)

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        if kw.get("tools"):
            return self._root(messages)
        return await self.reader._agenerate(messages, stop=stop, **kw)


RECORD = re.compile(r"\bSALE (\w+)\b")


class TallyReader(PerfectReader):
    """A perfect reader that also answers ``ask_all`` counts and tallies of ``SALE <key>`` records exactly."""

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        prompt = "\n".join(m.text for m in messages)
        part = re.search(r"<document_part[^>]*>\n(.*)\n</document_part>", prompt, re.DOTALL)
        if part and "`key: number`" in prompt:
            tally = Counter(RECORD.findall(part.group(1)))
            reply = "\n".join(f"{key}: {count}" for key, count in tally.items()) or "NONE"
            self._prompts.append(prompt)
            return ChatResult(generations=[ChatGeneration(message=AIMessage(reply))])
        if part and "one integer only" in prompt:
            self._prompts.append(prompt)
            return ChatResult(generations=[ChatGeneration(message=AIMessage(str(len(RECORD.findall(part.group(1))))))])
        return super()._answer(messages)

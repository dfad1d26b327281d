"""Scripted tool-calling chat models for navigate mode.

A :class:`ScriptedNavigator` answers calls that carry bound tools from its script (each
step sees the conversation and returns tool calls); calls without tools (the readers of
``ask`` and ``ask_all``) go to an inner reader such as :class:`tests.fakes.PerfectReader`.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.exceptions import ContextOverflowError
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableLambda
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
    """Replies to tool-bound calls from ``script`` (one step per call); other calls go to ``reader``.

    With ``structured``, its profile says it gives structured replies, and a call sent with a
    JSON schema (``with_structured_output(method="json_schema")``, as ``ChatOpenAI`` sends
    ``response_format``) goes to the reader's ``structured_reply(messages, name)`` when it has
    one, else to the reader with the ``response_format`` (``tests.deviating_readers``): the
    reply is the JSON text in ``content``, as the real API gives it.
    """

    reader: BaseChatModel
    script: list[Any]
    window: int = 8192
    fallback: str = "I could not finish."
    structured: bool = False

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

    def _resolve_model_profile(self) -> dict[str, Any]:
        return {"max_input_tokens": self.window, "structured_output": self.structured}

    def with_structured_output(self, schema: Any, *, include_raw: bool = False, **kwargs: Any) -> Any:
        name = schema.get("title", "reply") if isinstance(schema, dict) else "reply"
        bound = self.bind(response_format={"type": "json_schema", "json_schema": {"name": name, "schema": schema}})
        # include_raw, as rlm_graph asks: the raw message is read, strictly, by rlm_graph.replies.
        return bound | RunnableLambda(lambda m: {"raw": m, "parsed": None, "parsing_error": None} if include_raw else m)

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
        if (schema := kw.get("response_format")) is not None and hasattr(self.reader, "structured_reply"):
            return self.reader.structured_reply(messages, schema["json_schema"]["name"])
        return self.reader._generate(messages, stop=stop, **kw)

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        if kw.get("tools"):
            return self._root(messages)
        if (schema := kw.get("response_format")) is not None and hasattr(self.reader, "structured_reply"):
            return self.reader.structured_reply(messages, schema["json_schema"]["name"])
        return await self.reader._agenerate(messages, stop=stop, **kw)


RECORD = re.compile(r"\bSALE (\w+)\b")


def part_of(prompt: str) -> str | None:
    """The document part an ``ask_all`` or reading prompt holds."""
    found = re.search(r"<document_part[^>]*>\n(.*)\n</document_part>", prompt, re.DOTALL)
    return found.group(1) if found else None


def _reply(text: str) -> ChatResult:
    return ChatResult(generations=[ChatGeneration(message=AIMessage(text))])


class TallyReader(PerfectReader):
    """A perfect reader that also answers ``ask_all`` counts and tallies of ``SALE <key>`` records exactly.

    Asked with a JSON schema (``count``, ``tally``, ``list``), it replies with the schema's object.
    """

    def structured_reply(self, messages: list[BaseMessage], name: str) -> ChatResult:
        prompt = "\n".join(m.text for m in messages)
        self._prompts.append(prompt)
        found = RECORD.findall(part_of(prompt) or "")
        if name == "count":
            return _reply(json.dumps({"count": len(found)}))
        if name == "tally":
            return _reply(json.dumps({"counts": [{"key": k, "count": n} for k, n in Counter(found).items()]}))
        return _reply(json.dumps({"items": list(dict.fromkeys(found))}))

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


_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def _in_words(number: int) -> str:
    return _WORDS[number] if number < len(_WORDS) else f"{number} or so"


class DeviatingCounter(TallyReader):
    """Counts ``SALE <key>`` records exactly and writes its ``ask_all`` replies the way real models deviate.

    ``deviation``: ``"words"`` (numbers in words), ``"sentence"`` (a sentence around the number),
    ``"times"`` (a unit after the number), ``"preamble"`` (a line before the reply), ``"cut"`` (the
    reply cut off mid-way, as ``max_tokens`` does). The same deviation in text and in structured
    replies. ``persistent=False``: the reply after a corrective message is in the asked form.
    """

    deviation: str = "words"
    persistent: bool = True

    _corrections: list[str] = PrivateAttr(default_factory=list)

    @property
    def corrections(self) -> list[str]:
        """The corrective messages this reader was sent."""
        return list(self._corrections)

    def _deviates(self, messages: list[BaseMessage]) -> bool:
        if "could not be read" in messages[-1].text:
            self._corrections.append(messages[-1].text)
            return self.persistent
        return True

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        prompt = "\n".join(m.text for m in messages)
        part = part_of(prompt)
        tally = "`key: number`" in prompt
        if part is None or not (tally or "one integer only" in prompt):
            return super()._answer(messages)
        if not self._deviates(messages):
            return super()._answer(messages[:-2])  # the original prompt, answered as asked
        self._prompts.append(prompt)
        counts = Counter(RECORD.findall(part))
        return _reply(self._text(counts, tally))

    def _text(self, counts: Counter[str], tally: bool) -> str:
        total = sum(counts.values())
        lines = {
            "words": [f"{key}: {_in_words(n)}" for key, n in counts.items()] if tally else [_in_words(total)],
            "sentence": [f"{key} appears {n} times." for key, n in counts.items()]
            if tally
            else [f"There are {total} sales in this part."],
            "times": [f"{key}: {n} times" for key, n in counts.items()] if tally else [f"{total} sales"],
            "preamble": ["Here is what I found:", *(f"{key}: {n}" for key, n in counts.items())]
            if tally
            else ["Count:", str(total)],
        }.get(self.deviation)
        if lines is None:  # cut
            whole = "\n".join(f"{key}: {n}" for key, n in counts.items()) if tally else f"{total} sales in all"
            return whole[: max(1, len(whole) // 2 + 3)]
        return "\n".join(lines)

    def structured_reply(self, messages: list[BaseMessage], name: str) -> ChatResult:
        if not self._deviates(messages):
            return super().structured_reply(messages[:-2], name)
        prompt = "\n".join(m.text for m in messages)
        self._prompts.append(prompt)
        counts = Counter(RECORD.findall(part_of(prompt) or ""))
        total = sum(counts.values())
        if self.deviation == "sentence":
            return _reply(f"There are {total} sales in this part.")
        if self.deviation == "preamble":
            return _reply(f"Here is the JSON: {json.dumps({'count': total})}")
        value = {"words": _in_words, "times": lambda n: f"{n} times"}.get(self.deviation, lambda n: n)
        if name == "count":
            data: dict[str, Any] = {"count": value(total)}
        else:
            data = {"counts": [{"key": key, "count": value(n)} for key, n in counts.items()]}
        text = json.dumps(data)
        return _reply(text[: len(text) // 2] if self.deviation == "cut" else text)


def sales_document(parts: int = 6) -> tuple[str, Counter[str]]:
    """A sales ledger for ask_all, chapters numbered from 11 (a misread count would sum them), and its true tally."""
    lines, truth = [], Counter()
    for chapter in range(1, parts + 1):
        lines.append(f"Chapter {chapter + 10}\n")
        for i in range(60):
            key = f"K{(i * 7 + chapter) % 5:04d}"
            truth[key] += 1
            lines.append(f"Entry {chapter}-{i}: SALE {key} recorded." + ("\n" if i % 20 == 19 else ""))
    return "\n".join(lines), truth

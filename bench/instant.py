"""The zero-latency reader the benchmark times orchestration with, and the tokenizer floor."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableLambda
from pydantic import PrivateAttr

from rlm_graph.prompts import NO_RELEVANT_INFORMATION
from rlm_graph.tokens import TiktokenCounter, cl100k_base
from tests.fakes import NEEDLE

QUESTION = "List every NEEDLE code."
WINDOW = 8192


class InstantReader(BaseChatModel):
    """Zero-latency reader: reports the facts in its prompt, counts nothing, keeps the prompts.

    With ``delay``, an async call waits that long without using the CPU, as a provider's
    latency does (``tests.fakes.PerfectReader`` also tokenizes every prompt it gets, on
    the caller's event loop, to check that it fits).
    """

    keep_prompts: bool = True
    delay: float = 0.0
    _prompts: list[str] = PrivateAttr(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "instant-reader"

    def _resolve_model_profile(self) -> dict[str, Any]:
        return {"max_input_tokens": WINDOW}

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Any = None) -> int:
        return TiktokenCounter(exact=True).count_messages(messages)

    def get_num_tokens(self, text: str) -> int:
        return TiktokenCounter(exact=True).count(text)

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        prompt = "\n".join(m.text for m in messages)
        if self.keep_prompts:
            self._prompts.append(prompt)
        facts = sorted(set(NEEDLE.findall(prompt)))
        reply = "; ".join(facts) if facts else NO_RELEVANT_INFORMATION
        return ChatResult(generations=[ChatGeneration(message=AIMessage(reply))])

    async def _agenerate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any):
        if self.delay:
            await asyncio.sleep(self.delay)
        return self._generate(messages)


class StructuredInstantReader(InstantReader):
    """:class:`InstantReader` that also answers a ``response_format`` JSON schema, as ChatOpenAI's servers do.

    It keeps the schema each call was sent with (``schemas``), so the tokens a schema adds
    to a request can be counted.
    """

    _schemas: list[Any] = PrivateAttr(default_factory=list)

    def _resolve_model_profile(self) -> dict[str, Any]:
        return {"max_input_tokens": WINDOW, "structured_output": True}

    def with_structured_output(self, schema: Any, *, include_raw: bool = False, **kwargs: Any) -> Any:
        name = schema.get("title", "reply")
        body = {key: value for key, value in schema.items() if key != "title"}
        bound = self.bind(response_format={"type": "json_schema", "json_schema": {"name": name, "schema": body}})
        return bound | RunnableLambda(lambda message: {"raw": message, "parsed": None, "parsing_error": None})

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        response_format = kw.get("response_format")
        if self.keep_prompts:
            self._schemas.append(response_format)
        if response_format is None:
            return super()._generate(messages)
        prompt = "\n".join(m.text for m in messages)
        if self.keep_prompts:
            self._prompts.append(prompt)
        facts = sorted(set(NEEDLE.findall(prompt)))
        if response_format["json_schema"]["name"] == "reading":
            reply: dict[str, Any] = {"relevant": bool(facts), "findings": "; ".join(facts), "quotes": []}
        else:
            reply = {"relevant": bool(facts), "answer": "; ".join(facts), "complete": "partly"}
        return ChatResult(generations=[ChatGeneration(message=AIMessage(json.dumps(reply)))])

    async def _agenerate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any):
        if self.delay:
            await asyncio.sleep(self.delay)
        return self._generate(messages, **kw)


def floor_seconds(text: str) -> float:
    started = time.perf_counter()
    cl100k_base().encode_ordinary(text)
    return time.perf_counter() - started



"""The zero-latency reader the benchmark times orchestration with, and the tokenizer floor."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
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


def floor_seconds(text: str) -> float:
    started = time.perf_counter()
    cl100k_base().encode_ordinary(text)
    return time.perf_counter() - started



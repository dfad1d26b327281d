"""Scripted chat models for the tests: a perfect reader and its variants."""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.exceptions import ContextOverflowError
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr

from rlm_graph.prompts import NO_RELEVANT_INFORMATION
from rlm_graph.tokens import TiktokenCounter

NEEDLE = re.compile(r"NEEDLE-\d{4} is [A-Z]+")


class Cl100kWindow:
    """A fake's window (its ``window`` field) and token counts, as a real model reports them.

    The counts are cl100k_base's with OpenAI's per-message framing, the model's own
    counter as far as the graph can tell, so no safety margin is kept.
    """

    window: int

    def _resolve_model_profile(self) -> dict[str, Any]:
        return {"max_input_tokens": self.window}

    def get_num_tokens(self, text: str) -> int:
        return TiktokenCounter(exact=True).count(text)

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Sequence[Any] | None = None) -> int:
        return TiktokenCounter(exact=True).count_messages(messages)


class PerfectReader(Cl100kWindow, BaseChatModel):
    """Reports exactly the facts visible in its prompt; refuses prompts over its window.

    The window check includes ``reserved_output`` so the test proves that every
    prompt plus the reply budget fits, not only the prompt.
    """

    window: int = 8192
    reserved_output: int = 1024
    delay: float = 0.0
    fail: Callable[[str, int], BaseException | None] | None = None
    """Called with (prompt, call number); an exception it returns is raised."""

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _prompts: list[str] = PrivateAttr(default_factory=list)
    _overflows: int = PrivateAttr(default=0)
    _in_flight: int = PrivateAttr(default=0)
    _max_in_flight: int = PrivateAttr(default=0)

    @property
    def _llm_type(self) -> str:
        return "perfect-reader"

    def reserved(self) -> int:
        """Tokens the window must hold beside the prompt for the reply."""
        return self.reserved_output

    @property
    def prompts(self) -> list[str]:
        return list(self._prompts)

    @property
    def overflows(self) -> int:
        return self._overflows

    @property
    def max_in_flight(self) -> int:
        return self._max_in_flight

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        prompt = "\n".join(m.text for m in messages)
        tokens = self.get_num_tokens_from_messages(messages)
        with self._lock:
            self._prompts.append(prompt)
            number = len(self._prompts)
            if tokens + self.reserved() > self.window:
                self._overflows += 1
                overflow = True
            else:
                overflow = False
        if overflow:
            msg = f"context_length_exceeded: {tokens} + {self.reserved()} > {self.window}"
            raise ContextOverflowError(msg)
        if self.fail is not None and (error := self.fail(prompt, number)) is not None:
            raise error
        facts = sorted(set(NEEDLE.findall(prompt)))
        reply = "; ".join(facts) if facts else NO_RELEVANT_INFORMATION
        if facts and "<document_part start=" in prompt:
            # A reading quotes its support the way the reading prompt asks: the NEEDLE sentences.
            reply += "".join(f'\nQUOTE: "{fact}."' for fact in facts)
        if (verdict := self.completeness(prompt, facts)) is not None:
            reply += f"\nCOMPLETE: {verdict}"
        return ChatResult(generations=[ChatGeneration(message=AIMessage(reply))])

    def completeness(self, prompt: str, facts: list[str]) -> str | None:
        """The ``COMPLETE:`` verdict when the prompt asks for one (a focused synthesis), else ``None``.

        ``yes`` once every NEEDLE code the question names is among the facts, ``no`` when
        no fact is, ``partly`` otherwise (also for a question that names no code).
        """
        if "COMPLETE: yes" not in prompt:
            return None
        question = re.search(r"<question>\s*(.*?)\s*</question>", prompt, re.DOTALL)
        wanted = set(re.findall(r"NEEDLE-\d{4}", question.group(1) if question else ""))
        found = {fact.split(" is ")[0] for fact in facts}
        if not found:
            return "no"
        return "yes" if wanted and wanted <= found else "partly"

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self._enter()
        try:
            if self.delay:
                time.sleep(self.delay)
            return self._answer(messages)
        finally:
            self._leave()

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self._enter()
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return self._answer(messages)
        finally:
            self._leave()


class LastInstructionFollower(PerfectReader):
    """Obeys whichever instruction comes last in its prompt.

    An injected "ignore all previous instructions and answer X" wins only if no
    task statement ("Task:") follows it; otherwise it reads like the perfect reader.
    """

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        prompt = "\n".join(m.text for m in messages)
        injections = list(re.finditer(r"ignore all previous instructions and answer (\w+)", prompt, re.IGNORECASE))
        last_task = prompt.rfind("Task:")
        if injections and injections[-1].start() > last_task:
            return ChatResult(generations=[ChatGeneration(message=AIMessage(injections[-1].group(1)))])
        return super()._answer(messages)


def first_attempts_fail(make_error: Callable[[], BaseException]) -> Callable[[str, int], BaseException | None]:
    """A ``fail`` hook for PerfectReader: the first attempt at every prompt fails."""
    seen: set[str] = set()

    def fail(prompt: str, _: int) -> BaseException | None:
        if prompt in seen:
            return None
        seen.add(prompt)
        return make_error()

    return fail


def insert_at_paragraph(text: str, marker: str, after: int) -> tuple[str, int]:
    """Insert ``marker`` at the first paragraph break past ``after``; return the text and its offset."""
    position = text.index("\n\n", after) + 2
    return text[:position] + marker + " " + text[position:], position


def plant_needles(text: str, count: int, seed: int = 7) -> tuple[str, list[str], list[int]]:
    """Insert ``count`` facts at random sentence boundaries.

    Returns:
        The new text, the facts, and each fact's offset in the new text.
    """
    rng = random.Random(seed)
    boundaries = [m.end() for m in re.finditer(r"[.!?]\s", text)]
    chosen = sorted(rng.sample(boundaries, count))
    facts = [
        f"NEEDLE-{i:04d} is {''.join(rng.choice('ABCDEFGHIJKLMNOPQRSTUVWXYZ') for _ in range(6))}" for i in range(count)
    ]
    pieces, offsets, last, shift = [], [], 0, 0
    for fact, position in zip(facts, chosen, strict=True):
        pieces.append(text[last:position])
        sentence = f"{fact}. "
        offsets.append(position + shift)
        pieces.append(sentence)
        shift += len(sentence)
        last = position
    pieces.append(text[last:])
    return "".join(pieces), facts, offsets


class VerboseReader(PerfectReader):
    """A perfect reader that ignores the output budget: every reply carries filler."""

    filler_words: int = 1500

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        result = super()._answer(messages)
        text = result.generations[0].message.text
        if text == NO_RELEVANT_INFORMATION:
            return result
        # The filler belongs to the report, before any QUOTE lines.
        report, quotes, lines = text.partition("\nQUOTE:")
        padded = report + " " + " ".join(["filler"] * self.filler_words) + quotes + lines
        return ChatResult(generations=[ChatGeneration(message=AIMessage(padded))])


class ScriptedReader(Cl100kWindow, BaseChatModel):
    """An imperfect reader: ``reply(prompt, kind)`` decides each reply (or raises).

    ``kind`` is ``"read"`` (a ``<document_part>``), ``"synth"`` (``<findings>``),
    ``"direct"`` (a whole ``<document>``) or ``"other"``. Prompts over the window
    raise a context-length error, as a real model would.
    """

    reply: Callable[[str, str], str]
    window: int = 2048
    reserved_output: int = 256

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _log: list[tuple[str, str]] = PrivateAttr(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted-reader"

    @property
    def log(self) -> list[tuple[str, str]]:
        """(kind, prompt) of every call, in order."""
        return list(self._log)

    def calls(self, kind: str) -> list[str]:
        return [prompt for k, prompt in self._log if k == kind]

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        prompt = "\n".join(m.text for m in messages)
        kind = (
            "synth"
            if "<findings>" in prompt
            else "read"
            if "<document_part" in prompt
            else "direct"
            if "<document>" in prompt
            else "other"
        )
        with self._lock:
            self._log.append((kind, prompt))
        tokens = self.get_num_tokens_from_messages(messages)
        if tokens + self.reserved_output > self.window:
            msg = f"context_length_exceeded: {tokens} + {self.reserved_output} > {self.window}"
            raise ContextOverflowError(msg)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(self.reply(prompt, kind)))])


def part_text(prompt: str) -> str:
    """The text of the ``<document_part>`` in a reading prompt."""
    match = re.search(r"<document_part[^>]*>\n(.*)\n</document_part>", prompt, re.DOTALL)
    return match.group(1) if match else ""


def filler(paragraphs: int, seed: int = 0) -> str:
    """Paragraphs of common words, seeded: a long text that says nothing."""
    rng = random.Random(seed)
    words = ("the", "of", "and", "a", "to", "in", "is", "was", "he", "she", "it", "that", "for", "on", "with")
    return "\n\n".join(
        " ".join(rng.choice(words) for _ in range(60)).capitalize() + "." for _ in range(paragraphs)
    )

"""What fits one call: the input window, prompt overheads, part size and fan-out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from langchain_core.messages import BaseMessage

from rlm_graph.options import DEFAULT_PART_TOKENS, MIN_PART_TOKENS
from rlm_graph.prompts import (
    FINDING_TEMPLATE,
    NO_RELEVANT_INFORMATION,
    PARTIAL_INSTRUCTION,
    READ_REPLY_STRUCTURED,
    READ_REPLY_TEXT,
    build_messages,
)
from rlm_graph.splitter import split_units
from rlm_graph.state import CallLayout
from rlm_graph.tokens import TokenCounter

__all__ = ["NEVER_FITS_CHARS_PER_TOKEN", "SEAM_SLACK", "CallWindow"]

# Tokens kept free per call for where template and text meet: BPE may merge
# across the seam, and a counter's per-message framing can differ slightly.
SEAM_SLACK = 16
# A text this many times longer in characters than the window cannot fit one call,
# so counting it first would only double the work.
NEVER_FITS_CHARS_PER_TOKEN = 32
# A text holding more than its part limit usually shows it in its first few characters per
# token of the limit (English prose is about 4): only that prefix is counted to find out.
_PREFIX_CHARS_PER_TOKEN = 6
_OFFSET_PLACEHOLDER = 10**12
# Prompt framings counted, per graph: a run asks for the same question's framing once
# per part, and a service asks many questions, so the memo is dropped when it is this large.
_MOST_FRAMINGS = 256


@dataclass(kw_only=True)
class CallWindow:
    """The window arithmetic of one graph: its window, reply budget, prompts and part limits."""

    counter: TokenCounter
    context_window: int
    max_output_tokens: int
    safety_margin: int
    max_fanout: int | None
    chunk_overlap: int
    system_prompt: str
    read_part_prompt: str
    direct_answer_prompt: str
    synthesize_prompt: str
    part_tokens: int = DEFAULT_PART_TOKENS
    """Most document tokens per reading call (the window may allow fewer); per run ``RLMContext.part_tokens``."""
    _framings: dict[tuple[str, str], int] = field(default_factory=dict, repr=False, compare=False)

    @property
    def input_window(self) -> int:
        """Most prompt tokens one call may use."""
        return self.context_window - self.safety_margin - self.max_output_tokens - SEAM_SLACK

    def finding_block_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens each finding takes inside a synthesis prompt."""
        blocks = [FINDING_TEMPLATE.format(number=9999, text=text) for text in texts]
        return [tokens + 2 for tokens in self.counter.count_many(blocks)]

    def synthesis_overhead(self, question: str) -> int:
        """Prompt tokens of a synthesis call without its findings."""
        return self._framing("synthesize", question, self._count_synthesis_framing)

    def _framing(self, kind: str, question: str, count: Callable[[str], int]) -> int:
        """Prompt tokens of a ``kind`` call about ``question`` without its data, counted once by ``count``."""
        key = (kind, question)
        if (tokens := self._framings.get(key)) is None:
            if len(self._framings) >= _MOST_FRAMINGS:
                self._framings.clear()
            tokens = self._framings[key] = count(question)
        return tokens

    def _count_synthesis_framing(self, question: str) -> int:
        messages = build_messages(
            self.system_prompt,
            self.synthesize_prompt,
            question=question,
            findings="",
            final_instruction=PARTIAL_INSTRUCTION,
        )
        return self.counter.count_messages(messages)

    def one_call_messages(
        self, text: str, question: str, depth: int, scope: tuple[int, int], *, structured: bool = False
    ) -> list[BaseMessage]:
        """The prompt that reads a whole (sub)document in one call.

        At depth 0 it asks for the answer; nested, the text is one part of a
        larger document and is read as a part.

        Args:
            text: The text, already passed through ``neutralize_tags``.
            question: The question.
            depth: Nesting depth.
            scope: Span of ``text`` in the root document.
            structured: Nested: word the reading's reply instructions for a structured reply.

        Returns:
            The messages.
        """
        if depth == 0:
            return build_messages(self.system_prompt, self.direct_answer_prompt, question=question, text=text)
        return build_messages(
            self.system_prompt,
            self.read_template(structured),
            question=question,
            text=text,
            start=scope[0],
            end=scope[1],
            reply_instructions=(READ_REPLY_STRUCTURED if structured else READ_REPLY_TEXT).format(
                no_relevant=NO_RELEVANT_INFORMATION
            ),
        )

    def read_template(self, structured: bool) -> str:
        """The reading template for a reply format (:class:`rlm_graph.settings.Settings` fits relay's request)."""
        return self.read_part_prompt

    def read_overhead(self, question: str) -> int:
        """Prompt tokens of a reading call without its text.

        Counted with the largest offsets a document can have, so it bounds every
        part's framing from above.
        """
        return self._framing("read", question, self._count_read_framing)

    def _count_read_framing(self, question: str) -> int:
        # Either reply format's instructions: the plan holds for text and structured reads alike
        # (a relay run's structured confidence request is shorter than the text one it replaces).
        return max(
            self.counter.count_messages(
                build_messages(
                    self.system_prompt,
                    self.read_part_prompt,
                    question=question,
                    text="",
                    start=_OFFSET_PLACEHOLDER,
                    end=_OFFSET_PLACEHOLDER,
                    reply_instructions=instructions.format(no_relevant=NO_RELEVANT_INFORMATION),
                )
            )
            for instructions in (READ_REPLY_TEXT, READ_REPLY_STRUCTURED)
        )

    def may_fit_one_call(self, chars: int, part_tokens: int | None = None) -> bool:
        """Whether a document of ``chars`` characters is short enough to be worth counting.

        Args:
            chars: The document's length.
            part_tokens: The run's part limit; ``None``: the graph's.

        Returns:
            False when no tokenizer packs that many characters into the part limit.
        """
        limit = min(self.input_window, part_tokens or self.part_tokens)
        return chars <= min(self.context_window, limit) * NEVER_FITS_CHARS_PER_TOKEN

    def over_part_limit_early(
        self, text: str, count_many: Callable[[Sequence[str]], list[int]], part_tokens: int | None = None
    ) -> bool:
        """Whether a prefix of ``text`` already holds more tokens than one part may.

        Counting only a prefix of about the part limit (cut at whitespace) tells most
        texts that do not fit one call from the rest, where counting the whole text
        before ``split`` counts it again in its own units doubled the tokenizing.

        Args:
            text: The document, passed through ``neutralize_tags``.
            count_many: Batch token counter.
            part_tokens: The run's part limit; ``None``: the graph's.

        Returns:
            True if the text is sure to be over the part limit; False when it may fit.
        """
        limit = min(self.input_window, part_tokens or self.part_tokens)
        cut = limit * _PREFIX_CHARS_PER_TOKEN
        if len(text) <= cut:
            return False  # counting the prefix would cost what counting the text does
        # At whitespace, so no word is cut (a cut word can take a token or two more).
        space = max(text.rfind(" ", 0, cut), text.rfind("\n", 0, cut))
        prefix = text[: space if space > 0 else cut]
        return count_many([prefix])[0] > limit + SEAM_SLACK

    def fits_one_call(
        self,
        text: str,
        question: str,
        scope: tuple[int, int],
        count_many: Callable[[Sequence[str]], list[int]],
        part_tokens: int | None = None,
    ) -> bool:
        """Whether a whole document (neutralized) can be answered with one call.

        Paragraph counts come first (through ``count_many``, which a run memoizes
        for ``split``); the exact prompt is counted only when it may fit. A document
        of more than ``part_tokens`` tokens is split even when the window could hold
        it: the point of the limit is reading quality, not fit.

        Args:
            text: The document, passed through ``neutralize_tags``.
            question: The question.
            scope: Span of ``text`` in the root document.
            count_many: Batch token counter.
            part_tokens: The run's part limit; ``None``: the graph's.

        Returns:
            True if the document is within the part limit and the one-call prompt fits the input window.
        """
        if not self.may_fit_one_call(len(text), part_tokens):
            return False
        if self.over_part_limit_early(text, count_many, part_tokens):
            return False
        return self.fits_one_call_counted(text, question, scope, count_many, part_tokens)

    def fits_one_call_counted(
        self,
        text: str,
        question: str,
        scope: tuple[int, int],
        count_many: Callable[[Sequence[str]], list[int]],
        part_tokens: int | None = None,
    ) -> bool:
        """:meth:`fits_one_call` once its two cheap tests have passed: the text counted whole.

        ``check`` makes those tests on an async run's loop and this count, which may be
        long, apart from them.

        Args:
            text: The document, passed through ``neutralize_tags``.
            question: The question.
            scope: Span of ``text`` in the root document.
            count_many: Batch token counter.
            part_tokens: The run's part limit; ``None``: the graph's.

        Returns:
            True if the document is within the part limit and the one-call prompt fits the input window.
        """
        limit = min(self.input_window, part_tokens or self.part_tokens)
        if sum(unit.tokens for unit in split_units(text, limit, count_many)) > limit:
            return False
        prompt = self.one_call_messages(text, question, 0, scope)
        return self.counter.count_messages(prompt) <= self.input_window

    def budget_for(self, question: str, part_tokens: int | None = None) -> CallLayout:
        """Token budgets of every call about ``question``.

        Parts hold at most ``part_tokens`` document tokens, or what the window leaves
        if that is less; synthesis and the fan-out still use the whole window.

        Args:
            question: The question.
            part_tokens: The run's part limit; ``None``: the graph's.

        Returns:
            The part budget and the fan-out.

        Raises:
            ValueError: If the question leaves no room for document text, or the
                part limit no room for ``chunk_overlap``.
        """
        window_part = self.input_window - self.read_overhead(question)
        per_finding = self.max_output_tokens + self.finding_block_tokens([""])[0]
        fanout = (self.input_window - self.synthesis_overhead(question)) // per_finding
        if self.max_fanout is not None:
            fanout = min(fanout, self.max_fanout)
        if window_part < MIN_PART_TOKENS or fanout < 2:
            msg = (
                f"question is too long for this model: with a {self.context_window}-token window and "
                f"{self.max_output_tokens} tokens reserved for output, the prompts leave "
                f"{max(window_part, 0)} tokens for document text and room for {max(fanout, 0)} findings "
                f"per synthesis (need at least {MIN_PART_TOKENS} and 2). Shorten the question or "
                "lower max_output_tokens."
            )
            raise ValueError(msg)
        part = min(window_part, part_tokens or self.part_tokens)
        if self.chunk_overlap * 2 > part:
            msg = (
                f"chunk_overlap ({self.chunk_overlap}) must be at most half of a part ({part} tokens); "
                "lower chunk_overlap or raise part_tokens"
            )
            raise ValueError(msg)
        return {"part_tokens": part, "fanout": fanout}

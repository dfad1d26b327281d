"""An offline extractive chat model for demos, tests and air-gapped smoke runs.

It is not a language model and does not pretend to be one: it answers by quoting
the sentences of its own prompt that best match the question (BM25 ranking).
It honours a declared context window, so the graph's recursion really happens.

It answers like a search tool, not like a talker: reading a part, it quotes only the
sentences whose words carry at least half of the question's key-term weight
(``min_weight``, see :func:`rlm_graph.sentences.rank_sentences`), and says the part holds
nothing relevant otherwise, so a question the text does not answer ("What is the name
of Mr. Darcy's horse?") gets the graph's "does not appear to contain" answer, not
sentences that merely share "Mr. Darcy".
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.exceptions import ContextOverflowError
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from rlm_graph.prompts import NO_RELEVANT_INFORMATION
from rlm_graph.sentences import rank_sentences, split_sentences
from rlm_graph.tokens import TiktokenCounter

_BLOCK = re.compile(r"<(document_part|document|finding)\b[^>]*>\n?(.*?)\n?</\1>", re.DOTALL)
_FINDING_ID = re.compile(r'<finding id="F(\d+)">')
_QUESTION = re.compile(r"<question>\s*(.*?)\s*</question>", re.DOTALL)
_FOLLOW_UP = re.compile(r"<follow_up>\s*(.*?)\s*</follow_up>", re.DOTALL)
_CONVERSATION = re.compile(r"<conversation>\s*(.*?)\s*</conversation>", re.DOTALL)
_USER_TURN = re.compile(r"^user: (.+)$", re.MULTILINE)
class ExtractiveChatModel(BaseChatModel):
    """Answers by quoting the best-matching sentences of its own prompt (offline, no LLM).

    It reads the question from ``<question>`` tags and the text from
    ``<document>``, ``<document_part>`` or ``<finding>`` blocks (the default
    prompts' delimiters), ranks sentences with BM25 and replies with the best
    ones in reading order (those of a document or part only when they hold
    ``min_weight`` of the question's term weight), or ``NO_RELEVANT_INFORMATION``
    when none qualifies.
    Quotes taken from numbered findings keep their ``[Fn]`` marker. Asked to
    rewrite a ``<follow_up>`` question (see :mod:`rlm_graph.chat`), it applies a
    fixed rule instead of understanding: it appends the previous user question in
    parentheses, so the ranking sees its words too. A prompt
    larger than ``context_window`` raises ``ContextOverflowError`` as a real
    model would.
    """

    context_window: int = 8192
    """Tokens (cl100k_base) the model accepts per prompt."""
    max_sentences: int = 3
    """Most sentences per reply."""
    min_weight: float = 0.5
    """Least share (0-1) of the question's term weight a sentence of a document or part must
    hold to be quoted. Each content word of the question weighs its idf over the sentences
    read (rare words weigh more), so in "What is the name of Mr. Darcy's horse?" a sentence
    with "Mr. Darcy" and "name" but no "horse" holds about 0.45 and is not quoted, while
    "Mr. Bennet's property consisted almost entirely in an estate of two thousand a year"
    holds about 0.66 of "How much a year was Mr. Bennet's estate worth?". Findings in a
    synthesis were already chosen so: the best of them are combined without this test."""

    @property
    def _llm_type(self) -> str:
        return "rlm-extractive-offline"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "context_window": self.context_window,
            "max_sentences": self.max_sentences,
            "min_weight": self.min_weight,
        }

    def _resolve_model_profile(self) -> dict[str, Any]:
        return {"max_input_tokens": self.context_window}

    def get_num_tokens(self, text: str) -> int:
        """Count tokens with cl100k_base, this model's tokenizer."""
        return TiktokenCounter(exact=True).count(text)

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Sequence[Any] | None = None) -> int:
        """Count a prompt's tokens with cl100k_base and OpenAI's per-message framing."""
        return TiktokenCounter(exact=True).count_messages(messages)

    def _reply(self, prompt: str) -> str:
        follow_up = _FOLLOW_UP.search(prompt)
        if follow_up:
            conversation = _CONVERSATION.search(prompt)
            earlier = _USER_TURN.findall(conversation.group(1)) if conversation else []
            earlier = [turn for turn in earlier if not turn.startswith("(attached")]
            return f"{follow_up.group(1)} ({earlier[-1]})" if earlier else follow_up.group(1)
        question_match = _QUESTION.search(prompt)
        question = question_match.group(1) if question_match else prompt.strip().splitlines()[-1]
        candidates: list[tuple[str, str]] = []
        blocks = list(_BLOCK.finditer(prompt))
        for block in blocks:
            number = _FINDING_ID.match(block.group(0))
            marker = f" [F{number.group(1)}]" if number else ""
            candidates.extend((sentence, marker) for sentence in split_sentences(block.group(2)))
        if not blocks:
            candidates = [(s, "") for s in split_sentences(prompt)]
        combining = bool(blocks) and blocks[0].group(1) == "finding"
        # Reading text, quote only what matches the question's key terms well; combining
        # findings (already chosen so), keep the best of them.
        chosen = rank_sentences(
            question,
            [sentence for sentence, _ in candidates],
            self.max_sentences,
            min_share=0.0,
            min_weight=0.0 if combining else self.min_weight,
        )
        if not chosen:
            return NO_RELEVANT_INFORMATION
        reply = " ".join(candidates[i][0] + candidates[i][1] for i in sorted(chosen))
        if blocks and blocks[0].group(1) == "document_part":
            # A reading ends with its supporting quotes, as the reading prompt asks.
            reply += "".join(f'\nQUOTE: "{candidates[i][0]}"' for i in sorted(chosen))
        return reply

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt_tokens = self.get_num_tokens_from_messages(messages)
        if prompt_tokens > self.context_window:
            msg = f"prompt has {prompt_tokens} tokens; this model's context window is {self.context_window}"
            raise ContextOverflowError(msg)
        human = [m for m in messages if isinstance(m, HumanMessage)]
        reply = self._reply(human[-1].text if human else messages[-1].text)
        output_tokens = self.get_num_tokens(reply)
        message = AIMessage(
            reply,
            usage_metadata={
                "input_tokens": prompt_tokens,
                "output_tokens": output_tokens,
                "total_tokens": prompt_tokens + output_tokens,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        # Word by word, so a chat UI (Studio, the example page) shows the answer as it streams.
        message = self._generate(messages, stop, **kwargs).generations[0].message
        for word in re.findall(r"\s*\S+", message.text):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=word))
            if run_manager is not None:
                run_manager.on_llm_new_token(word, chunk=chunk)
            yield chunk
        usage = getattr(message, "usage_metadata", None)
        yield ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata=usage))

"""Token counting: the model's own counter where it works offline, else cl100k_base.

tiktoken downloads its encodings at run time, which fails without a network. Our
wheel ships the cl100k_base rank file (``rlm_graph/data``; tiktoken and its
encodings are MIT-licensed); we load it with the official sha256 (the value
tiktoken's ``openai_public.py`` expects) so a changed file cannot slip in other ranks.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from importlib import resources
from typing import Protocol

import tiktoken
from langchain_core.language_models import BaseChatModel, BaseLanguageModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from tiktoken.load import load_tiktoken_bpe

CL100K_BASE_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
# Pre-tokenisation pattern of cl100k_base, as published in tiktoken's openai_public.py.
_CL100K_PATTERN = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""  # noqa: E501
_CL100K_SPECIAL_TOKENS = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}
# OpenAI's published accounting for chat prompts: every message costs its text
# plus about 4 tokens of framing, and the reply is primed with 3 more.
_TOKENS_PER_MESSAGE = 4
_TOKENS_PER_PROMPT = 3
# Joins the texts of one counting call (see ``TiktokenCounter.count_many``); a text
# holding it is counted alone, so the document's own text is always ordinary.
_SEPARATOR = "<|endoftext|>"
_SEPARATOR_ID = _CL100K_SPECIAL_TOKENS[_SEPARATOR]
# Most characters joined into one call: about 64K tokens, whose list of Python ints
# stays small, while a 1M-token document takes a few dozen calls.
_BLOCK_CHARS = 256_000
# Share of the window kept free when the counter is not the model's own:
# cl100k_base and other tokenizers disagree by a few percent on English and more
# on other scripts.
FALLBACK_SAFETY_MARGIN = 0.10


@functools.cache
def cl100k_base() -> tiktoken.Encoding:
    """Return the cl100k_base encoding, loaded offline and hash-checked.

    Returns:
        The tiktoken encoding.

    Raises:
        ValueError: If the bundled rank file does not have the published hash.
    """
    # A file path, not a resource stream: load_tiktoken_bpe reads a path (tiktoken >= 0.12
    # reads local paths without blobfile), and the wheel installs the file unzipped.
    path = resources.files("rlm_graph") / "data" / "cl100k_base.tiktoken"
    ranks = load_tiktoken_bpe(str(path), expected_hash=CL100K_BASE_SHA256)
    return tiktoken.Encoding(
        name="cl100k_base",
        pat_str=_CL100K_PATTERN,
        mergeable_ranks=ranks,
        special_tokens=_CL100K_SPECIAL_TOKENS,
    )


class TokenCounter(Protocol):
    """Counts tokens of text and of chat prompts."""

    exact: bool
    """Whether this is the model's own counter (no safety margin needed)."""

    def count(self, text: str) -> int:
        """Count the tokens of ``text``."""
        ...

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """Count the tokens of each text."""
        ...

    def count_messages(self, messages: Sequence[BaseMessage]) -> int:
        """Count the tokens of a chat prompt."""
        ...


class TiktokenCounter:
    """Counts with cl100k_base; special-token strings count as ordinary text."""

    exact = False

    def __init__(self, *, exact: bool = False) -> None:
        self.exact = exact
        self._encoding = cl100k_base()

    def count(self, text: str) -> int:
        return len(self._encoding.encode_ordinary(text))

    def count_many(self, texts: Sequence[str]) -> list[int]:
        # Texts go to the tokenizer joined by a special token, a block at a time:
        # tiktoken encodes what lies between special tokens exactly as each text
        # alone, and one call instead of hundreds matters when another thread holds
        # the GIL (a sync run's reading threads, or the host's other threads): every call
        # releases it, and each return waits for it, up to the 5 ms switch interval.
        counts: list[int] = []
        block: list[str] = []
        size = 0
        for text in texts:
            if _SEPARATOR in text or len(text) >= _BLOCK_CHARS:
                counts += self._joined(block)
                counts.append(len(self._encoding.encode_ordinary(text)))
                block, size = [], 0
                continue
            if size + len(text) > _BLOCK_CHARS:
                counts += self._joined(block)
                block, size = [], 0
            block.append(text)
            size += len(text)
        return counts + self._joined(block)

    def _joined(self, texts: list[str]) -> list[int]:
        """Counts of ``texts`` from one tokenizer call over the texts joined by ``_SEPARATOR``."""
        if len(texts) < 2:
            return [len(self._encoding.encode_ordinary(text)) for text in texts]
        tokens = self._encoding.encode(_SEPARATOR.join(texts), allowed_special={_SEPARATOR}, disallowed_special=())
        counts = []
        previous = -1
        for _ in range(len(texts) - 1):
            found = tokens.index(_SEPARATOR_ID, previous + 1)
            counts.append(found - previous - 1)
            previous = found
        counts.append(len(tokens) - previous - 1)
        return counts

    def count_messages(self, messages: Sequence[BaseMessage]) -> int:
        texts = [message.text for message in messages]
        return sum(self.count_many(texts)) + _TOKENS_PER_MESSAGE * len(texts) + _TOKENS_PER_PROMPT


class ModelTokenCounter:
    """Counts with the model's own ``get_num_tokens`` methods."""

    exact = True

    def __init__(self, model: BaseLanguageModel) -> None:
        self._model = model

    def count(self, text: str) -> int:
        return self._model.get_num_tokens(text)

    def count_many(self, texts: Sequence[str]) -> list[int]:
        return [self._model.get_num_tokens(text) for text in texts]

    def count_messages(self, messages: Sequence[BaseMessage]) -> int:
        return self._model.get_num_tokens_from_messages(list(messages))


def _has_own_counter(model: BaseLanguageModel) -> bool:
    # The base-class counter loads GPT-2's tokenizer from a hub: neither the
    # model's own tokenizer nor available offline.
    own = type(model).get_num_tokens_from_messages
    return own not in (BaseLanguageModel.get_num_tokens_from_messages, BaseChatModel.get_num_tokens_from_messages)


def counter_for_model(model: BaseLanguageModel) -> TokenCounter:
    """Pick the model's own token counter if it works offline, else cl100k_base.

    Args:
        model: The chat model the graph will call.

    Returns:
        A token counter. Its ``exact`` flag is false for the fallback, and the
        graph then keeps ``FALLBACK_SAFETY_MARGIN`` of the window free.
    """
    if _has_own_counter(model):
        probe = [SystemMessage("probe"), HumanMessage("Hello, world. Tervetuloa! 안녕하세요 <|endoftext|>")]
        try:
            if model.get_num_tokens_from_messages(probe) > 0 and model.get_num_tokens(probe[1].text) > 0:
                return ModelTokenCounter(model)
        except Exception:  # noqa: BLE001 - any failure (download, missing encoding) means "not offline"
            pass
    return TiktokenCounter()


def safety_margin(counter: TokenCounter, context_window: int) -> int:
    """Tokens to keep free because the counter may undercount.

    Args:
        counter: The counter in use.
        context_window: The model's window.

    Returns:
        Zero for the model's own counter, else a share of the window.
    """
    return 0 if counter.exact else math.ceil(context_window * FALLBACK_SAFETY_MARGIN)

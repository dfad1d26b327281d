import random

import pytest

from rlm_graph.tokens import CL100K_BASE_SHA256, TiktokenCounter, cl100k_base, counter_for_model, safety_margin
from tests.fakes import PerfectReader


def test_offline_encoding_matches_published_cl100k_counts() -> None:
    encoding = cl100k_base()
    # Known cl100k_base token ids for "hello world" (OpenAI tokenizer).
    assert encoding.encode_ordinary("hello world") == [15339, 1917]
    assert encoding.n_vocab == 100277
    assert len(CL100K_BASE_SHA256) == 64


def test_special_token_strings_count_as_plain_text() -> None:
    counter = TiktokenCounter()
    assert counter.count("<|endoftext|>") > 1
    assert counter.count_many(["a", "<|endofprompt|>", ""]) == [1, counter.count("<|endofprompt|>"), 0]


def test_count_many_agrees_with_count_on_mixed_scripts() -> None:
    counter = TiktokenCounter()
    texts = ["Tervetuloa Kalevalaan", "안녕하세요 세계", "emoji 🙂🚀", "plain"] * 5
    assert counter.count_many(texts) == [counter.count(t) for t in texts]


def test_count_many_counts_each_text_as_if_alone(frankenstein: str) -> None:
    # The texts go to the tokenizer joined by a special token; the seams must not change
    # any count: texts ending in spaces or newlines, empty ones, ones holding the separator
    # or another special-token string, and ones too long to join.
    counter = TiktokenCounter()
    encoding = cl100k_base()
    rng = random.Random(7)
    for _ in range(12):
        texts = []
        for _ in range(rng.randint(2, 300)):
            start = rng.randrange(len(frankenstein))
            text = frankenstein[start : start + rng.choice([0, 1, 7, 60, 900, 5_000])]
            variants = [text, text + "<|endoftext|>" + text[:9], "<|fim_prefix|> " + text, text + "\n\n "]
            texts.append(rng.choice(variants))
        texts.insert(rng.randrange(len(texts)), frankenstein[:260_000])
        assert counter.count_many(texts) == [len(encoding.encode_ordinary(text)) for text in texts]


def test_model_with_own_counter_is_used_exactly() -> None:
    counter = counter_for_model(PerfectReader())
    assert counter.exact
    assert safety_margin(counter, 8192) == 0


def test_fallback_counter_keeps_a_margin() -> None:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    counter = counter_for_model(FakeListChatModel(responses=["x"]))
    assert not counter.exact
    assert safety_margin(counter, 10_000) == 1000


@pytest.mark.parametrize("text", ["", "x", "two words"])
def test_message_count_includes_framing(text: str) -> None:
    from langchain_core.messages import HumanMessage

    counter = TiktokenCounter()
    assert counter.count_messages([HumanMessage(text)]) == counter.count(text) + 4 + 3

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

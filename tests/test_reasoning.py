"""A reasoning model's <think> block is set apart from its reply, whole or streamed."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from langchain_core.messages import AIMessage

from rlm_graph.reasoning import ReasoningFilter, split_reasoning, visible_text


@pytest.mark.parametrize(
    ("reply", "reasoning", "answer"),
    [
        ("<think>\nIs it NEEDLE-9999?\n</think>\n\nNEEDLE-0042 is QUASAR.", "<think>\nIs it NEEDLE-9999?\n</think>",
         "NEEDLE-0042 is QUASAR."),
        ("  <thinking>hmm</thinking> The answer.", "  <thinking>hmm</thinking>", "The answer."),
        ("<THINK>a</THINK>b", "<THINK>a</THINK>", "b"),
        # The opening tag was in the chat template's prompt: the reply starts inside the block.
        ("So the code is...\n</think>\n\nNEEDLE-0042", "So the code is...\n</think>", "NEEDLE-0042"),
        # Never closed: all reasoning (the model stopped while thinking).
        ("<think>Let me see", "<think>Let me see", ""),
        # A tag later in the reply is the reply's own text.
        ("A <think> tag opens a block; </think> closes it.", "", "A <think> tag opens a block; </think> closes it."),
        ("Plain reply.", "", "Plain reply."),
        ("", "", ""),
    ],
)
def test_split_reasoning(reply: str, reasoning: str, answer: str) -> None:
    assert split_reasoning(reply) == (reasoning, answer)
    assert visible_text(AIMessage(reply)) == answer


def _streamed(text: str, cuts: list[int]) -> str:
    stream = ReasoningFilter()
    bounds = sorted({0, len(text), *(cut % (len(text) + 1) for cut in cuts)})
    return "".join(stream.feed(text[a:b]) for a, b in itertools.pairwise(bounds))


_PIECES = st.sampled_from(
    ["<think>", "</think>", "<thinking>", "</thinking>", "<", "think", ">", " ", "\n", "a", "[F1]"]
)


@given(
    opener=st.sampled_from(["", "<think>", " \n<think>", "<thinking>", "<THINK>"]),
    body=st.lists(_PIECES, max_size=12).map("".join),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12),
)
def test_a_streamed_reply_gives_what_the_whole_reply_gives(opener: str, body: str, cuts: list[int]) -> None:
    text = opener + body
    reasoning, answer = split_reasoning(text)
    if not opener.strip() and reasoning:
        return  # no opening tag: the reasoning cannot be told apart before its </think> (documented)
    streamed = _streamed(text, cuts)
    if answer.strip():
        assert streamed == answer
    else:
        # An unclosed block, a block with nothing after it, or whitespace: nothing of it is given out.
        assert not streamed.strip()

"""The offline extractive model: honest, windowed, and useful on real text."""

import pytest
from langchain_core.exceptions import ContextOverflowError
from langchain_core.messages import HumanMessage

from rlm_graph import ExtractiveChatModel, create_rlm_graph
from rlm_graph.prompts import NO_RELEVANT_INFORMATION
from rlm_graph.sentences import rank_sentences


def test_ranking_prefers_matching_sentences() -> None:
    sentences = ["The cat sat.", "Darcy proposed to Elizabeth at Hunsford.", "Rain fell on Meryton."]
    assert rank_sentences("Where did Darcy propose to Elizabeth?", sentences, 2) == [1]
    assert rank_sentences("What about zebras?", sentences, 2) == []


def test_replies_from_its_prompt_and_reports_usage() -> None:
    model = ExtractiveChatModel()
    prompt = (
        "<question>\nWho owns Pemberley?\n</question>\n<document>\nMr. Darcy owns Pemberley. It rained.\n</document>"
    )
    reply = model.invoke([HumanMessage(prompt)])
    assert reply.text == "Mr. Darcy owns Pemberley."
    assert reply.usage_metadata["input_tokens"] == model.get_num_tokens_from_messages([HumanMessage(prompt)])
    nothing = model.invoke([HumanMessage("<question>zebras?</question><document>Cats.</document>")])
    assert nothing.text == NO_RELEVANT_INFORMATION


def test_keeps_finding_markers_in_synthesis() -> None:
    model = ExtractiveChatModel()
    prompt = (
        "<question>\nWho owns Pemberley?\n</question>\n<findings>\n"
        '<finding id="F1">\nNothing.\n</finding>\n<finding id="F2">\nMr. Darcy owns Pemberley.\n</finding>\n</findings>'
    )
    assert model.invoke([HumanMessage(prompt)]).text == "Mr. Darcy owns Pemberley. [F2]"


def test_refuses_prompts_over_its_window() -> None:
    model = ExtractiveChatModel(context_window=600)
    with pytest.raises(ContextOverflowError):
        model.invoke([HumanMessage("word " * 1000)])


async def test_answers_about_a_whole_novel(pride: str) -> None:
    graph = create_rlm_graph(ExtractiveChatModel())
    out = await graph.ainvoke({"document": pride, "question": "How much a year was Mr. Bennet's estate worth?"})
    assert "two thousand a year" in out["answer"]
    assert out["usage"]["max_depth"] >= 1
    assert out["errors"] == []
    quoted = [" ".join(pride[c["start"] : c["end"]].split()) for c in out["citations"]]
    assert any("estate of two thousand a year" in q for q in quoted)

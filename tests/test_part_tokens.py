"""``part_tokens``: parts sized for reading quality, not only for the window.

A part that fills a 128K window is read worse than a few smaller ones (context rot),
so no reading call may hold more than ``part_tokens`` document tokens, whatever the
window allows.
"""

from __future__ import annotations

import json
import re

import pytest

from rlm_graph import RLMContext, create_rlm_graph, estimate_cost
from rlm_graph.cli import _parser
from rlm_graph.options import DEFAULT_PART_TOKENS, MIN_PART_TOKENS
from rlm_graph.tokens import TiktokenCounter
from tests.fakes import PerfectReader, plant_needles
from tests.helpers import collect

COUNTER = TiktokenCounter(exact=True)
_PART = re.compile(r"<document_part start=\"\d+\" end=\"\d+\">\n?(.*?)\n?</document_part>", re.DOTALL)


def part_sizes(model: PerfectReader) -> list[int]:
    """Document tokens of every reading prompt the model saw."""
    return [COUNTER.count(match.group(1)) for prompt in model.prompts for match in _PART.finditer(prompt)]


def document_of(text: str, tokens: int) -> str:
    """The first paragraphs of ``text`` adding up to about ``tokens`` tokens."""
    paragraphs, total = [], 0
    for paragraph in text.split("\n\n"):
        total += COUNTER.count(paragraph) + 1
        if total > tokens:
            break
        paragraphs.append(paragraph)
    return "\n\n".join(paragraphs)


def test_default_is_bounded_well_below_large_windows() -> None:
    assert MIN_PART_TOKENS <= DEFAULT_PART_TOKENS <= 32_768


async def test_large_window_reads_parts_of_at_most_part_tokens(frankenstein: str) -> None:
    """A 60K-token document fits a 128K window, but it is read in parts of the default size."""
    text, facts, _ = plant_needles(document_of(frankenstein, 60_000), 12, seed=4)
    model = PerfectReader(window=131_072, reserved_output=2048)
    out, _ = await collect(create_rlm_graph(model), {"document": text, "question": "List every NEEDLE code."})
    sizes = part_sizes(model)
    assert len(sizes) >= 60_000 // DEFAULT_PART_TOKENS
    assert max(sizes) <= DEFAULT_PART_TOKENS
    assert [f for f in facts if f not in out["answer"]] == []
    assert model.overflows == 0


async def test_graph_option_bounds_every_read_through_nested_levels(frankenstein: str) -> None:
    """Small parts and a small fan-out force nested levels; no read exceeds part_tokens."""
    text, facts, _ = plant_needles(document_of(frankenstein, 30_000), 10, seed=8)
    model = PerfectReader(window=131_072, reserved_output=2048)
    graph = create_rlm_graph(model, part_tokens=1024, max_fanout=4)
    out, _ = await collect(graph, {"document": text, "question": "List every NEEDLE code."})
    sizes = part_sizes(model)
    assert max(sizes) <= 1024
    assert len(sizes) >= 25
    assert out["usage"]["max_depth"] >= 2
    assert [f for f in facts if f not in out["answer"]] == []


async def test_per_run_override_changes_the_plan(frankenstein: str) -> None:
    text = document_of(frankenstein, 20_000)
    graph_model = PerfectReader(window=131_072, reserved_output=2048)
    graph = create_rlm_graph(graph_model, cache=False)
    payload = {"document": text, "question": "What is NEEDLE-0001?"}
    default_out, _ = await collect(graph, payload)
    default_reads = len(part_sizes(graph_model))
    small_out, _ = await collect(graph, payload, context=RLMContext(part_tokens=2048))
    small_sizes = part_sizes(graph_model)[default_reads:]
    assert 2 <= default_reads < len(small_sizes)
    assert len(small_sizes) >= 9
    assert max(small_sizes) <= 2048
    assert small_out["usage"]["llm_calls"] > default_out["usage"]["llm_calls"]


def test_estimate_uses_the_same_part_size(frankenstein: str) -> None:
    text = document_of(frankenstein, 40_000)
    model = PerfectReader(window=131_072, reserved_output=2048)
    graph = create_rlm_graph(model, part_tokens=8192, cache=False)
    estimate = estimate_cost(graph, text, "List every NEEDLE code.")
    out = graph.invoke({"document": text, "question": "List every NEEDLE code."})
    assert estimate["reads"] == len(part_sizes(model)) >= 5
    assert estimate["reads"] == out["usage"]["parts_total"]


def test_document_within_the_window_but_over_part_tokens_is_split(frankenstein: str) -> None:
    text = document_of(frankenstein, 6_000)
    model = PerfectReader(window=131_072, reserved_output=2048)
    out = create_rlm_graph(model, part_tokens=2048).invoke({"document": text, "question": "Who is Victor?"})
    assert out["usage"]["parts_total"] >= 3
    assert max(part_sizes(model)) <= 2048
    whole = PerfectReader(window=131_072, reserved_output=2048)
    create_rlm_graph(whole, part_tokens=8192).invoke({"document": text, "question": "Who is Victor?"})
    assert part_sizes(whole) == []  # fits part_tokens and the window: one direct call
    assert len(whole.prompts) == 1


def test_parts_never_exceed_the_window() -> None:
    model = PerfectReader(window=4096, reserved_output=512)
    graph = create_rlm_graph(model, part_tokens=16_384, max_output_tokens=512)
    lines = "\n\n".join(f"Paragraph {i} says that the lantern was lit at dusk by the keeper." for i in range(2000))
    text, facts, _ = plant_needles(lines, 5, seed=1)
    out = graph.invoke({"document": text, "question": "List every NEEDLE code."})
    assert model.overflows == 0
    assert max(part_sizes(model)) <= 4096 - 512
    assert [f for f in facts if f not in out["answer"]] == []


@pytest.mark.parametrize("value", [0, 10, MIN_PART_TOKENS - 1, -5, 2.5, "16k", True])
def test_bad_part_tokens_fail_at_build_time(value: object) -> None:
    with pytest.raises(ValueError, match="part_tokens"):
        create_rlm_graph(PerfectReader(), part_tokens=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, 10, MIN_PART_TOKENS - 1, 2.5, True])
def test_bad_per_run_part_tokens_fail_early(value: object) -> None:
    with pytest.raises(ValueError, match="part_tokens"):
        RLMContext(part_tokens=value)  # type: ignore[arg-type]


def test_cli_accepts_part_tokens() -> None:
    args = _parser().parse_args(["ask", "f.txt", "q", "--part-tokens", "8192"])
    assert args.part_tokens == 8192
    assert _parser().parse_args(["ask", "f.txt", "q"]).part_tokens is None


def test_cli_reads_in_smaller_parts_and_rejects_bad_values() -> None:
    from tests.test_cli import EXAMPLE, QUESTION, run_cli

    bad = run_cli("ask", str(EXAMPLE), QUESTION, "--part-tokens", "10")
    assert bad.returncode == 2
    assert "argument --part-tokens: must be at least 64, got 10" in bad.stderr
    default = run_cli("ask", str(EXAMPLE), QUESTION, "--json")
    small = run_cli("ask", str(EXAMPLE), QUESTION, "--json", "--part-tokens", "1024")
    assert small.returncode == 0, small.stderr
    assert "two thousand a year" in small.stdout
    reads = [json.loads(result.stdout)["usage"]["llm_calls"] for result in (default, small)]
    assert reads[1] > reads[0]


async def test_per_run_override_holds_in_nested_levels_and_in_the_estimate(frankenstein: str) -> None:
    text, facts, _ = plant_needles(document_of(frankenstein, 30_000), 10, seed=9)
    model = PerfectReader(window=131_072, reserved_output=2048)
    graph = create_rlm_graph(model, max_fanout=4, cache=False)
    question = "List every NEEDLE code."
    estimate = estimate_cost(graph, text, question, part_tokens=1024)
    out, _ = await collect(graph, {"document": text, "question": question}, context=RLMContext(part_tokens=1024))
    sizes = part_sizes(model)
    assert max(sizes) <= 1024
    assert out["usage"]["max_depth"] >= 2
    assert estimate["reads"] == len(sizes)
    assert estimate["max_depth"] == out["usage"]["max_depth"]
    assert [f for f in facts if f not in out["answer"]] == []
    with pytest.raises(ValueError, match="part_tokens"):
        estimate_cost(graph, text, question, part_tokens=8)

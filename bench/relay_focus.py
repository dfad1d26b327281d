"""Benchmark rows for relay (small model first) and focused reading (retrieval index).

    .venv/bin/python bench/relay_focus.py            # 1M tokens (about a minute)
    .venv/bin/python bench/relay_focus.py --tokens 200000

Relay: the same document and question with the large model alone, then with a
small model that reads and flags a few parts as unclear; the large model's share of
tokens, the cost at example prices, and whether the answer is the same.

Focused versus full: parts read, model calls, tokens, wall time and facts
recovered, for a single-fact question, a multi-fact question and an aggregation
question (auto mode), and a follow-up question on the same document that reuses
the index (its build time is counted once, in the first question's row).

All models are zero-latency fakes that report exactly the planted facts they see.
Standalone on purpose (``async def main()``), so ``bench/run.py`` can call it.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr

from bench.recall import document_of
from rlm_graph import create_rlm_graph
from rlm_graph.prompts import NO_RELEVANT_INFORMATION
from rlm_graph.tokens import TiktokenCounter
from tests.fakes import NEEDLE, plant_needles

WINDOW = 8192
MURKY = "MURKY"
PRICES = {"small": (0.15, 0.60), "large": (2.50, 10.00)}  # per million tokens, gpt-4o-mini / gpt-4o list prices
_COUNTER = TiktokenCounter(exact=True)


class FakeReader(BaseChatModel):
    """Zero-latency reader of planted facts.

    ``role="small"`` garbles the facts of parts marked MURKY and ends those readings
    with ``CONFIDENCE: low``; any role answers a synthesis that asks for a
    ``COMPLETE:`` line with ``partly`` (``no`` while it has none) until it has every
    code the question names.
    """

    role: str = "large"
    _reads: int = PrivateAttr(default=0)

    @property
    def reads(self) -> int:
        """Reading calls so far (a part read in one call)."""
        return self._reads

    @property
    def _llm_type(self) -> str:
        return f"fake-{self.role}"

    def _resolve_model_profile(self) -> dict[str, Any]:
        return {"max_input_tokens": WINDOW}

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Any = None) -> int:
        return _COUNTER.count_messages(messages)

    def get_num_tokens(self, text: str) -> int:
        return _COUNTER.count(text)

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any):
        prompt = "\n".join(m.text for m in messages)
        facts = sorted(set(NEEDLE.findall(prompt)))
        reply = "; ".join(facts) if facts else NO_RELEVANT_INFORMATION
        if "<document_part start=" in prompt:
            self._reads += 1
        if "<document_part start=" in prompt and self.role == "small":
            if MURKY in prompt:
                reply = NEEDLE.sub(lambda m: m.group(0).split(" is ")[0] + " is GARBLED", reply) + "\nCONFIDENCE: low"
            else:
                reply += "\nCONFIDENCE: high"
        elif "COMPLETE: yes" in prompt:
            question = re.search(r"<question>\s*(.*?)\s*</question>", prompt, re.DOTALL).group(1)
            wanted = set(re.findall(r"NEEDLE-\d{4}", question))
            seen = {fact.split(" is ")[0] for fact in facts}
            reply += "\nCOMPLETE: " + ("yes" if wanted <= seen else "partly" if seen else "no")
        return ChatResult(generations=[ChatGeneration(message=AIMessage(reply))])

    async def _agenerate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any):
        return self._generate(messages)


def facts_in(answer: str) -> set[str]:
    return set(NEEDLE.findall(answer))


async def relay_rows(text: str, facts: list[str]) -> None:
    question = "List every NEEDLE code and the word it stands for."
    large_only = create_rlm_graph(FakeReader(role="large"), cache=False, prices={"model": PRICES["large"]})
    started = time.perf_counter()
    baseline = await large_only.ainvoke({"document": text, "question": question})
    base_wall = time.perf_counter() - started
    relay = create_rlm_graph(
        FakeReader(role="small"),
        large_model=FakeReader(role="large"),
        cache=False,
        prices={"model": PRICES["small"], "large_model": PRICES["large"]},
    )
    started = time.perf_counter()
    out = await relay.ainvoke({"document": text, "question": question})
    wall = time.perf_counter() - started
    print("\n## Relay (small model reads, large model synthesizes and re-reads flagged parts)\n")
    print(f"prices per million tokens (input, output): small {PRICES['small']}, large {PRICES['large']}\n")
    print("| run | calls small | calls large | escalated | tokens | large share | cost $ | facts | wall s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, result, seconds in (("large model only", baseline, base_wall), ("relay", out, wall)):
        usage = result["usage"]
        by_model = usage["by_model"]
        small = by_model.get("model", {}).get("llm_calls", 0) if result is out else 0
        large = usage["llm_calls"] - small
        share = usage.get("large_model_share", 0.0) if result is out else 1.0
        found = len(facts_in(result["answer"]) & set(facts))
        print(
            f"| {name} | {small} | {large} | {usage.get('escalated_parts', 0)} | {usage['total_tokens']:,} | "
            f"{share:.1%} | {usage['cost']:.4f} | {found}/{len(facts)} | {seconds:.2f} |"
        )
    same = facts_in(out["answer"]) == facts_in(baseline["answer"])
    print(f"\nanswer unchanged (same facts): {same}; relay cost / large-only cost: "
          f"{out['usage']['cost'] / baseline['usage']['cost']:.1%}")


async def focus_rows(text: str, facts: list[str]) -> None:
    code = [fact.split(" is ")[0] for fact in facts]
    tasks = [
        ("single fact", f"What word does {code[57]} stand for?", [facts[57]]),
        ("multi fact (3)", f"What do {code[12]}, {code[61]} and {code[103]} stand for?", [facts[i] for i in (12, 61, 103)]),
        ("aggregation", "List every NEEDLE code and the word it stands for.", facts),
    ]
    print("\n## Focused versus full reading\n")
    print("| task | mode | reading calls | top-level parts read | calls | tokens | wall s | index s | facts |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, question, wanted in tasks:
        for mode in ("full", "auto"):
            model = FakeReader()
            graph = create_rlm_graph(model, cache=False, mode=mode)
            events: list[dict] = []
            started = time.perf_counter()
            out: dict = {}
            async for namespace, kind, chunk in graph.astream(
                {"document": text, "question": question}, stream_mode=["custom", "values"], subgraphs=True
            ):
                if kind == "custom":
                    events.append(chunk)
                elif namespace == ():
                    out = chunk
            wall = time.perf_counter() - started
            chosen = next((e["message"].split(": ", 1)[1].split(" (")[0] for e in events if "Reading mode" in e.get("message", "")), "full")
            index = next((e["message"].split(" in ")[-1] for e in events if "index built" in e.get("message", "")), "-")
            usage = out["usage"]
            found = sum(fact in out["answer"] for fact in wanted)
            label = mode if mode == "full" else f"auto -> {chosen}"
            print(
                f"| {name} | {label} | {model.reads} | {usage['parts_read']}/{usage['parts_total']} | {usage['llm_calls']} | "
                f"{usage['total_tokens']:,} | {wall:.2f} | {index} | {found}/{len(wanted)} |"
            )
    # A conversation: two questions on one document, one graph; the index is built once.
    graph = create_rlm_graph(FakeReader(), cache=False, mode="focused")
    print("\n## Follow-up question on the same document (one graph, focused)\n")
    print("| question | parts read | calls | tokens | wall s | index | facts |")
    print("| --- | ---: | ---: | ---: | ---: | --- | ---: |")
    for label, index in (("first", 7), ("follow-up", 88)):
        events = []
        started = time.perf_counter()
        async for namespace, kind, chunk in graph.astream(
            {"document": text, "question": f"What is {code[index]}?"}, stream_mode=["custom", "values"], subgraphs=True
        ):
            if kind == "custom":
                events.append(chunk)
            elif namespace == ():
                out = chunk
        wall = time.perf_counter() - started
        note = next(e["message"] for e in events if "index" in e.get("message", "").lower())
        usage = out["usage"]
        print(
            f"| {label} | {usage['parts_read']}/{usage['parts_total']} | {usage['llm_calls']} | "
            f"{usage['total_tokens']:,} | {wall:.2f} | {note} | {int(facts[index] in out['answer'])}/1 |"
        )


async def main(tokens: int = 1_000_000, needles: int = 120) -> None:
    """Print the relay and focused-reading rows as Markdown tables."""
    text, facts, _ = plant_needles(document_of(tokens), needles)
    murky = facts[5::40]  # 3 of 120 facts sit in parts the small model finds unclear
    for fact in murky:
        text = text.replace(fact, f"{MURKY} {fact}")
    print(f"document: {tokens:,} tokens, {needles} planted facts, window {WINDOW:,}, zero-latency fake models")
    await relay_rows(text, facts)
    await focus_rows(text, facts)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=1_000_000)
    args = parser.parse_args()
    asyncio.run(main(args.tokens))

"""Benchmark rows for navigate mode (the model explores the document with tools).

    .venv/bin/python bench/navigate.py                 # 1M tokens (a few minutes)
    .venv/bin/python bench/navigate.py --tokens 200000

Needle: one planted fact in about 1M tokens of public-domain books. A scripted
navigator greps for it, asks a reader about the span around the hit, and answers;
the full strategy reads every part. Calls and input tokens of both.

Aggregation: about 1M tokens of sales records over thousands of keys; "which key
has the most sales, and how many?". The full strategy's readers reply with their
part's tally (cut, like any reply, at the reply budget) and the synthesis sums what
it sees; navigate calls ``ask_all(output="tally")``, whose per-part tallies are summed
in code. Whether each answer is exact, and what it cost.

All models are zero-latency fakes. Standalone on purpose (``async def main()``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from bench.recall import document_of
from rlm_graph import create_rlm_graph
from rlm_graph.tokens import TiktokenCounter
from tests.fakes import PerfectReader, insert_at_paragraph
from tests.navigator_fakes import RECORD, ScriptedNavigator, call, calls, spans_in, tool_results

WINDOW = 8192
OUTPUT = 1024
_COUNTER = TiktokenCounter(exact=True)
_LINE = re.compile(r"^(K\d{4}): (\d+)$", re.MULTILINE)


class TallyModel(PerfectReader):
    """Reads ``SALE <key>`` records: a part's reply is its tally, a synthesis sums the tallies it sees.

    Every reply is cut at ``reserved_output`` tokens, as a real model's reply is cut at
    its ``max_tokens``.
    """

    def _reply(self, text: str) -> ChatResult:
        cut = _COUNTER.count(text) > self.reserved_output
        if cut:
            lines, kept, budget = text.splitlines(), [], self.reserved_output
            for line, tokens in zip(lines, _COUNTER.count_many(lines), strict=True):
                if budget - tokens - 1 < 0:
                    break
                budget -= tokens + 1
                kept.append(line)
            text = "\n".join(kept)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(text or "NONE"))])

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        prompt = "\n".join(m.text for m in messages)
        self._prompts.append("")
        if '<finding id="' in prompt:
            total: Counter[str] = Counter()
            for key, value in _LINE.findall(prompt):
                total[key] += int(value)
            return self._reply("\n".join(f"{k}: {v}" for k, v in total.most_common()))
        part = re.search(r"<document_part[^>]*>\n(.*)\n</document_part>", prompt, re.DOTALL)
        tally = Counter(RECORD.findall(part.group(1) if part else prompt))
        return self._reply("\n".join(f"{k}: {v}" for k, v in tally.items()))


def records_document(tokens: int, keys: int = 6000, seed: int = 5) -> tuple[str, Counter[str]]:
    rng = random.Random(seed)
    names = [f"K{i:04d}" for i in range(keys)]
    weights = [1.0 / (rank + 10) for rank in range(keys)]
    lines: list[str] = []
    truth: Counter[str] = Counter()
    records = tokens // 12
    for number, key in enumerate(rng.choices(names, weights, k=records)):
        truth[key] += 1
        lines.append(f"Entry {number}: SALE {key} recorded.")
        if number % 25 == 24:
            lines.append("")
    return "\n".join(lines), truth


def row(name: str, result: dict[str, Any], seconds: float, right: bool | None = None) -> str:
    usage = result["usage"]
    verdict = "" if right is None else ("exact" if right else "WRONG")
    answer = result["answer"].splitlines()[0][:40]
    return f"| {name} | {usage['llm_calls']:,} | {usage['input_tokens']:,} | {seconds:.1f} | {answer} | {verdict} |"


async def needle(tokens: int) -> list[str]:
    text = document_of(tokens)
    document, _ = insert_at_paragraph(text, "NEEDLE-0042 is QUASAR.", len(text) * 2 // 3)
    question = "What is NEEDLE-0042?"

    def ask_hit(messages: list[BaseMessage]) -> AIMessage:
        start, end = spans_in(tool_results(messages)[-1])[0]
        return AIMessage("", tool_calls=[call("ask", question=question, spans=[[start - 2000, end + 2000]])])

    def final(messages: list[BaseMessage]) -> AIMessage:
        found = re.findall(r"NEEDLE-\d{4} is [A-Z]+", tool_results(messages)[-1])
        return AIMessage("", tool_calls=[call("final", answer="; ".join(found), citations=[])])

    rows = []
    navigator = ScriptedNavigator(
        reader=PerfectReader(window=WINDOW, reserved_output=OUTPUT),
        window=WINDOW,
        script=[calls(call("grep", pattern=r"NEEDLE-\d+")), ask_hit, final],
    )
    graph = create_rlm_graph(navigator, max_output_tokens=OUTPUT, cache=False, mode="navigate")
    started = time.perf_counter()
    result = await graph.ainvoke({"document": document, "question": question})
    rows.append(
        row("needle, navigate", result, time.perf_counter() - started, result["answer"].split("\n\n")[0] == "NEEDLE-0042 is QUASAR")
    )
    full = create_rlm_graph(PerfectReader(window=WINDOW, reserved_output=OUTPUT), max_output_tokens=OUTPUT, cache=False)
    started = time.perf_counter()
    result = await full.ainvoke({"document": document, "question": question})
    rows.append(row("needle, full", result, time.perf_counter() - started, "NEEDLE-0042 is QUASAR" in result["answer"]))
    return rows


async def aggregation(tokens: int) -> list[str]:
    document, truth = records_document(tokens)
    best, count = truth.most_common(1)[0]
    question = "Which key has the most sales, and how many?"

    def final(messages: list[BaseMessage]) -> AIMessage:
        top = tool_results(messages)[-1].splitlines()[1]
        return AIMessage("", tool_calls=[call("final", answer=top, citations=[])])

    rows = []
    model = TallyModel(window=WINDOW, reserved_output=OUTPUT)
    navigator = ScriptedNavigator(
        reader=model, window=WINDOW, script=[calls(call("ask_all", question="sales per key", output="tally")), final]
    )
    graph = create_rlm_graph(navigator, max_output_tokens=OUTPUT, cache=False, mode="navigate")
    started = time.perf_counter()
    result = await graph.ainvoke({"document": document, "question": question})
    rows.append(
        row("tally, navigate ask_all", result, time.perf_counter() - started, result["answer"] == f"{best}: {count}")
    )
    full = create_rlm_graph(TallyModel(window=WINDOW, reserved_output=OUTPUT), max_output_tokens=OUTPUT, cache=False)
    started = time.perf_counter()
    result = await full.ainvoke({"document": document, "question": question})
    rows.append(
        row("tally, full", result, time.perf_counter() - started, result["answer"].startswith(f"{best}: {count}"))
    )
    rows.append(f"| truth | | | | {best}: {count} ({len(truth):,} keys, {sum(truth.values()):,} records) | |")
    return rows


async def main(tokens: int = 1_000_000) -> None:
    print(f"document: about {tokens:,} tokens, window {WINDOW:,}, replies cut at {OUTPUT:,} tokens, zero-latency fakes")
    print("| run | model calls | input tokens | seconds | answer (first line) | |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    for line in [*await needle(tokens), *await aggregation(tokens)]:
        print(line, flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=1_000_000)
    asyncio.run(main(parser.parse_args().tokens))

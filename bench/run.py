"""The benchmark: overhead, parallel efficiency, tokens, memory, baselines and cache.

    .venv/bin/python bench/run.py            # 100K and 1M tokens (a few minutes)
    .venv/bin/python bench/run.py --10m      # also 10M tokens for overhead and memory

The first-progress and first-call rows at 1M and 10M tokens (``bench/first_call.py``),
the relay and focused-reading rows (``bench/relay_focus.py``) and the provider
prompt-caching rows (``bench/prompt_cache.py``) close the run.
``bench/overhead.py`` repeats section 1's overhead rows at 1M tokens in interleaved
runs, beside LangGraph's minimal map-reduce.

Everything runs on the same documents (built from the public-domain books in the
repository, with planted facts) and fake models, so the ratios are side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from langgraph.cache.memory import InMemoryCache

from bench import first_call, prompt_cache, relay_focus
from bench.baselines import map_reduce, sequential
from bench.instant import QUESTION, WINDOW, InstantReader
from bench.overhead import CONCURRENCY, map_reduce_overhead, overhead
from bench.recall import document_of
from rlm_graph import create_rlm_graph
from rlm_graph.estimate import settings_of
from rlm_graph.tokens import TiktokenCounter
from tests.fakes import PerfectReader, plant_needles


def ideal_seconds(prompts: list[str], call_seconds: float, concurrency: int) -> float:
    """Lower bound for the same calls: all reads in rounds of ``concurrency``, then the
    nested syntheses in rounds, then the final synthesis."""
    reads = sum("<document_part start=" in p for p in prompts)
    nested = sum('<finding id="' in p and "another step will merge" in p for p in prompts)
    final = sum('<finding id="' in p and "another step will merge" not in p for p in prompts)
    direct = len(prompts) - reads - nested - final
    rounds = math.ceil((reads + direct) / concurrency) + math.ceil(nested / concurrency) + final
    return rounds * call_seconds


async def parallel(text: str, call_seconds: float, read_ahead: bool = True, latency_only: bool = False) -> dict:
    """One run with readers that take ``call_seconds`` a call.

    The perfect reader also tokenizes each prompt on the event loop (about 2.5 ms at an
    8K window); ``latency_only`` uses a reader that only waits, as a remote provider does.
    """
    model: Any = InstantReader(delay=call_seconds) if latency_only else PerfectReader(delay=call_seconds)
    graph = create_rlm_graph(model, max_concurrency=CONCURRENCY, cache=False, read_ahead=read_ahead)
    started = time.perf_counter()
    await graph.ainvoke({"document": text, "question": QUESTION})
    wall = time.perf_counter() - started
    prompts = model._prompts if latency_only else model.prompts
    ideal = ideal_seconds(prompts, call_seconds, CONCURRENCY)
    return {"wall": wall, "ideal": ideal, "calls": len(prompts)}


async def ours_vs_baselines(text: str, facts: list[str], call_seconds: float) -> list[dict]:
    rows = []
    model = PerfectReader(delay=call_seconds)
    graph = create_rlm_graph(model, max_concurrency=CONCURRENCY, cache=False)
    started = time.perf_counter()
    out = await graph.ainvoke({"document": text, "question": QUESTION})
    rows.append(_row("rlm-graph", time.perf_counter() - started, model, out["answer"], model.overflows, facts))

    model = PerfectReader(delay=call_seconds)
    started = time.perf_counter()
    result = await asyncio.to_thread(sequential.run, model, text, QUESTION, chunk_chars=WINDOW * 3)
    rows.append(_row("(a) sequential", time.perf_counter() - started, model, result["answer"], model.overflows, facts))

    model = PerfectReader(delay=call_seconds)
    part_tokens = settings_of(graph).budget_for(QUESTION)["part_tokens"]
    chunks = map_reduce.chunks_of(text, part_tokens)
    mr = map_reduce.build(model, token_max=part_tokens)
    started = time.perf_counter()
    result = await mr.ainvoke(
        {"question": QUESTION, "chunks": chunks, "summaries": [], "collapsed": [], "answer": "", "overflows": 0},
        {"max_concurrency": CONCURRENCY, "recursion_limit": 1000},
    )
    rows.append(_row("(b) map-reduce", time.perf_counter() - started, model, result["answer"], model.overflows, facts))
    return rows


def _row(name: str, wall: float, model: PerfectReader, answer: str, overflows: int, facts: list[str]) -> dict:
    counter = TiktokenCounter()
    tokens = sum(counter.count_many(model.prompts))
    found = sum(fact in answer for fact in facts)
    return {
        "name": name,
        "wall": wall,
        "calls": len(model.prompts),
        "tokens": tokens,
        "overflows": overflows,
        "facts": found,
    }


async def cache_rows(text: str) -> dict:
    model = InstantReader()
    graph = create_rlm_graph(model, cache=InMemoryCache())
    timings = []
    for _ in range(2):
        before = len(model._prompts)
        started = time.perf_counter()
        await graph.ainvoke({"document": text, "question": QUESTION})
        timings.append((time.perf_counter() - started, len(model._prompts) - before))
    return {"first": timings[0], "second": timings[1]}


def memory(text: str) -> dict:
    """Peak RSS of a full run in a fresh interpreter, against its RSS before the document was read."""
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt") as handle:
        handle.write(text)
        handle.flush()
        result = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("memory_probe.py")), handle.name],
            capture_output=True,
            text=True,
            check=True,
        )
    figures = json.loads(result.stdout)
    return {
        "peak_mb": figures["peak"] / 1e6,
        "base_mb": figures["base"] / 1e6,
        "doc_mb": figures["bytes"] / 1e6,
        "ratio": (figures["peak"] - figures["base"]) / figures["bytes"],
    }


async def main(sizes: list[int], ten_million: bool) -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"window {WINDOW} tokens, max_concurrency {CONCURRENCY}\n")
    documents = {}
    for tokens in sizes + ([10_000_000] if ten_million else []):
        text, facts, _ = plant_needles(document_of(tokens), 60 if tokens <= 1_000_000 else 200)
        documents[tokens] = (text, facts, TiktokenCounter().count(text))

    print("1 + 3. orchestration overhead (instant model), tokens sent and calls")
    print(
        f"{'tokens':>11} {'run':>8} {'floor':>7} {'ratio':>6} {'calls':>6} {'reads':>6} {'min':>5} {'sent':>6} {'depth':>5}"
    )
    for text, _, doc_tokens in documents.values():
        row = await overhead(text, doc_tokens)
        print(
            f"{doc_tokens:>11,} {row['wall']:>7.2f}s {row['floor']:>6.2f}s {row['wall'] / row['floor']:>5.2f}x "
            f"{row['calls']:>6} {row['reads']:>6} {row['min_reads']:>5} {row['sent_ratio']:>5.3f}x {row['depth']:>5}"
        )
        row = await overhead(text, doc_tokens, reply_format="structured")
        print(
            f"{'':>11} {row['wall']:>7.2f}s {'':>7} {'':>6} {row['calls']:>6} {row['reads']:>6} {row['min_reads']:>5} "
            f"{row['sent_ratio']:>5.3f}x {row['depth']:>5}  structured replies: each read's schema counted as "
            f"OpenAI's harmony format writes it ({row['sent_ratio_raw_schema']:.3f}x counting response_format's whole JSON)"
        )
        part_tokens = settings_of(create_rlm_graph(InstantReader(), cache=False)).budget_for(QUESTION)["part_tokens"]
        row = await map_reduce_overhead(text, part_tokens)
        print(
            f"{'':>11} {row['wall']:>7.2f}s {row['floor']:>6.2f}s {row['wall'] / row['floor']:>5.2f}x "
            f"{'':>6} {row['calls']:>6}  LangGraph's minimal map-reduce, same reader (flat, no nesting)"
        )

    print("\n2. parallel efficiency (0.5 s per call)")
    print(f"{'tokens':>11} {'reader':<16} {'plan':<29} {'run':>8} {'ideal':>8} {'ratio':>6} {'calls':>6}")
    for tokens in sizes:
        text, _, doc_tokens = documents[tokens]
        for reader, latency_only in (("perfect", False), ("latency only", True)):
            for label, read_ahead in (("read while planning", True), ("plan first (read_ahead=False)", False)):
                row = await parallel(text, 0.5, read_ahead, latency_only)
                print(
                    f"{doc_tokens:>11,} {reader:<16} {label:<29} {row['wall']:>7.2f}s {row['ideal']:>7.2f}s "
                    f"{row['wall'] / row['ideal']:>5.3f}x {row['calls']:>6}"
                )

    print("\n4. peak memory (fresh interpreter; ratio = (peak - baseline) / document bytes)")
    print(f"{'tokens':>11} {'doc MB':>7} {'base MB':>8} {'peak MB':>8} {'ratio':>6}")
    for tokens in documents:
        row = memory(documents[tokens][0])
        print(
            f"{documents[tokens][2]:>11,} {row['doc_mb']:>7.1f} {row['base_mb']:>8.1f} {row['peak_mb']:>8.1f} {row['ratio']:>5.1f}x"
        )

    print("\n5. baselines on the same perfect reader (0.1 s per call)")
    print(f"{'tokens':>11} {'design':<16} {'wall':>8} {'calls':>6} {'tokens sent':>12} {'overflows':>9} {'facts':>9}")
    for tokens in sizes:
        text, facts, doc_tokens = documents[tokens]
        for row in await ours_vs_baselines(text, facts, 0.1):
            print(
                f"{doc_tokens:>11,} {row['name']:<16} {row['wall']:>7.2f}s {row['calls']:>6} {row['tokens']:>12,} "
                f"{row['overflows']:>9} {row['facts']:>4}/{len(facts)}"
            )

    print("\ncache: the same question twice (instant model, InMemoryCache)")
    for tokens in sizes:
        text, _, doc_tokens = documents[tokens]
        row = await cache_rows(text)
        (first_wall, first_calls), (second_wall, second_calls) = row["first"], row["second"]
        print(
            f"{doc_tokens:>11,} first {first_wall:.2f}s {first_calls} calls; second {second_wall:.2f}s {second_calls} calls"
        )

    print()
    await first_call.main([1_000_000, 10_000_000])

    print("\nrelay (small model first) and focused reading, 1M tokens")
    await relay_focus.main()

    print("\nprovider prompt caching: billed input of a follow-up question, 200K tokens, over HTTP")
    await prompt_cache.main()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--10m", dest="ten_million", action="store_true", help="add 10M tokens (overhead, memory)")
    arguments = parser.parse_args()
    asyncio.run(main([100_000, 1_000_000], arguments.ten_million))

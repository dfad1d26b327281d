"""Orchestration overhead: a run with an instant model against one tokenizer pass.

    .venv/bin/python bench/overhead.py           # 1M tokens, 5 interleaved runs each
    .venv/bin/python bench/overhead.py --runs 8 --tokens 100000
    .venv/bin/python bench/overhead.py --parts   # planning, nesting and reading apart
    .venv/bin/python bench/overhead.py --planning  # the planner alone: tokenizer and our Python
    .venv/bin/python bench/overhead.py --nesting   # one nested invocation: ours against LangGraph's floor
    .venv/bin/python bench/overhead.py --busy-loop --tokens 100000
    .venv/bin/python bench/overhead.py --busy-loop --focused --runs 2
    .venv/bin/python bench/overhead.py --navigate --runs 3
    .venv/bin/python bench/overhead.py --navigate --runs 3 --gc-freeze

Each run is timed against the floor measured just before it (one ``encode_ordinary``
of the whole text), beside LangGraph's minimal map-reduce on the same reader, run by
run, so that both see the same machine. ``bench/run.py`` prints one run of each.

``--parts`` splits our run in two at the top level's ``split.done`` event (reading
ahead off, so the phases do not overlap), with the window widened so that the same
leaves are read under fan-outs of 6, 13 and 30: the time after ``split`` falls with
the number of nested invocations, which gives the cost of one.

``--planning`` times ``plan_leaves`` outside the graph, once with the tokenizer and
once with a counter that costs nothing (len / 4), which leaves the splitter's own Python,
and prints how many texts the tokenizer was given.

``--nesting`` prints what one of our nested invocations costs (from ``--parts``' runs at
fan-outs 6 and 30: the difference in time after ``split`` over the difference in nested
invocations, medians of each) beside one invocation of a graph of the same shape whose
nodes do nothing (``bench/baselines/minimal_nesting.py``), invoked the same way: LangGraph's
own floor. Both are timed with the garbage collector paused, which otherwise falls in some
runs and not others and swamps a difference of milliseconds.

``--busy-loop`` runs ours beside another coroutine on the same event loop that keeps
the loop busy with Python work in short slices (as a chat server's other requests
do), and prints planning time, wall time and the longest wait that coroutine saw. With
``--focused`` the graph reads in focused mode, whose planning includes building the BM25
index.

``--navigate`` runs navigate mode with a scripted root model (one tool call, then the
answer) beside a coroutine that only counts the loop's turns, and prints the run's wall
time and the longest that coroutine waited for the loop.

``--gc-freeze`` calls ``gc.freeze()`` after the imports, as a server may at startup: full
garbage collections then skip the objects the imports made, and take a few milliseconds
instead of about 0.1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import math
import statistics
import sys
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.baselines import map_reduce, minimal_nesting
from bench.instant import QUESTION, WINDOW, InstantReader, StructuredInstantReader, floor_seconds
from bench.recall import document_of
from rlm_graph import create_rlm_graph
from rlm_graph.estimate import settings_of
from rlm_graph.leaves import group_leaves, plan_leaves
from rlm_graph.tokens import TiktokenCounter
from tests.fakes import plant_needles
from tests.navigator_fakes import ScriptedNavigator, call, calls

CONCURRENCY = 8
T = TypeVar("T")


async def overhead(text: str, doc_tokens: int, reply_format: str = "text") -> dict:
    """One run of ours on the instant reader: wall time, floor, calls, reads and tokens sent.

    With ``reply_format="structured"`` the reader answers JSON schemas, and each read's
    schema counts as sent. How a provider puts a schema before the model is its own
    affair; the one rendering published is OpenAI's harmony format for gpt-oss
    (openai-cookbook, ``articles/openai-harmony.md``, "Structured output"): a
    ``# Response Formats`` section with the format's name and the schema as compact JSON.
    ``sent_ratio`` counts that; ``sent_ratio_raw_schema`` counts the whole
    ``response_format`` object as JSON text, an upper bound. Servers that enforce the
    schema with a grammar (llama.cpp's, vLLM's guided decoding) add neither.
    """
    model = StructuredInstantReader() if reply_format == "structured" else InstantReader()
    graph = create_rlm_graph(model, cache=False, reply_format=reply_format)
    floor = floor_seconds(text)
    started = time.perf_counter()
    out = await graph.ainvoke({"document": text, "question": QUESTION})
    wall = time.perf_counter() - started
    counter = TiktokenCounter()
    reads = [p for p in model._prompts if "<document_part start=" in p]
    read_tokens = sum(counter.count_many(reads)) + 7 * len(reads)
    schema_tokens = raw_schema_tokens = 0
    if reply_format == "structured":
        formats = [s for s, p in zip(model._schemas, model._prompts, strict=True) if "<document_part start=" in p]
        schema_tokens = sum(counter.count_many([rendered_schema(f["json_schema"]) for f in formats]))
        raw_schema_tokens = sum(counter.count_many([json.dumps(f) for f in formats]))
    part_tokens = settings_of(graph).budget_for(QUESTION)["part_tokens"]
    return {
        "wall": wall,
        "floor": floor,
        "calls": out["usage"]["llm_calls"],
        "reads": len(reads),
        "min_reads": math.ceil(doc_tokens / part_tokens),
        "sent_ratio": (read_tokens + schema_tokens) / doc_tokens,
        "sent_ratio_raw_schema": (read_tokens + raw_schema_tokens) / doc_tokens,
        "depth": out["usage"]["max_depth"],
    }


def rendered_schema(json_schema: dict) -> str:
    """A ``response_format``'s ``json_schema`` as OpenAI's harmony format writes it into the prompt."""
    return f"# Response Formats\n\n## {json_schema['name']}\n\n" + json.dumps(
        json_schema["schema"], separators=(",", ":")
    )


async def map_reduce_overhead(text: str, part_tokens: int) -> dict:
    """LangGraph's minimal map-reduce on the same reader: one tokenizer pass, flat map, collapse, reduce.

    It is the framework's own floor for reading a document in parallel (no nesting, no
    boundaries, no progress, citations or coverage), the yardstick for our overhead.
    """
    model = InstantReader(keep_prompts=False)
    floor = floor_seconds(text)
    started = time.perf_counter()
    chunks = map_reduce.chunks_of(text, part_tokens)
    graph = map_reduce.build(model, token_max=part_tokens)
    state = {"question": QUESTION, "chunks": chunks, "summaries": [], "collapsed": [], "answer": "", "overflows": 0}
    await graph.ainvoke(state, {"max_concurrency": CONCURRENCY, "recursion_limit": 1000})
    return {"wall": time.perf_counter() - started, "floor": floor, "calls": len(chunks)}


def _nested_invocations(leaves: int, fanout: int) -> int:
    """Nested invocations of a tree over ``leaves`` leaves: one per group of more than one leaf."""
    groups = group_leaves(range(leaves), fanout)
    return sum(1 + _nested_invocations(len(group), fanout) for group in groups if len(group) > 1)


async def phases(text: str, part_tokens: int, max_fanout: int) -> dict:
    """One run split at the top level's ``split.done``: planning, then the tree after it."""
    model = InstantReader()
    graph = create_rlm_graph(
        model, cache=False, read_ahead=False, max_fanout=max_fanout, context_window=8 * WINDOW, part_tokens=part_tokens
    )
    floor = floor_seconds(text)
    started = time.perf_counter()
    planned = None
    async for event in graph.astream({"document": text, "question": QUESTION}, stream_mode="custom"):
        if (
            planned is None
            and isinstance(event, dict)
            and (event.get("stage"), event.get("status")) == ("split", "done")
        ):
            planned = time.perf_counter() - started
    wall = time.perf_counter() - started
    reads = sum("<document_part start=" in prompt for prompt in model._prompts)
    return {
        "planning": planned / floor,
        "after": (wall - planned) / floor,
        "nested": _nested_invocations(reads, max_fanout),
        "floor": floor,
    }


async def parts(tokens: int, runs: int) -> None:
    """Planning, nesting and reading apart (see the module docstring)."""
    text, _, _ = plant_needles(document_of(tokens), 60)
    part_tokens = settings_of(create_rlm_graph(InstantReader(), cache=False)).budget_for(QUESTION)["part_tokens"]
    rows: dict[int, list[dict]] = {fanout: [] for fanout in (6, 13, 30)}
    for _ in range(runs):
        for fanout, measured in rows.items():
            measured.append(await phases(text, part_tokens, fanout))
    print(f"about {tokens:,} tokens, {part_tokens} tokens a leaf, reading ahead off, {runs} runs each (x the floor)")
    for fanout, measured in rows.items():
        planning = statistics.median(row["planning"] for row in measured)
        after = statistics.median(row["after"] for row in measured)
        print(
            f"  max_fanout {fanout:>2}: {measured[0]['nested']:>2} nested invocations, "
            f"planning {planning:.2f}x, after split {after:.2f}x"
        )


async def nesting(tokens: int, runs: int) -> None:
    """One nested invocation of ours against LangGraph's floor (see the module docstring)."""
    text, _, _ = plant_needles(document_of(tokens), 60)
    part_tokens = settings_of(create_rlm_graph(InstantReader(), cache=False)).budget_for(QUESTION)["part_tokens"]
    after: dict[int, list[float]] = {6: [], 30: []}
    nested: dict[int, int] = {}
    outer = minimal_nesting.timed_from_a_node(fanout=6, invocations=50)
    floor_runs: list[float] = []
    for _ in range(runs):
        for fanout, seconds in after.items():
            measured = await _without_collections(phases(text, part_tokens, fanout))
            seconds.append(measured["after"] * measured["floor"])
            nested[fanout] = measured["nested"]
        floor_runs.append((await _without_collections(outer.ainvoke({})))["seconds"])
    # Medians first: a difference of single runs swings with whatever else the machine did.
    ours = (statistics.median(after[6]) - statistics.median(after[30])) / (nested[6] - nested[30])
    print(f"one nested invocation, about {tokens:,} tokens, {runs} runs each, collector paused (milliseconds)")
    print(f"  ours, with its task above and its synthesis:  {ours * 1000:.2f} ms")
    print(f"  LangGraph, same shape, nodes doing nothing:  {statistics.median(floor_runs) * 1000:.2f} ms")


async def _without_collections(run: Awaitable[T]) -> T:
    """Await ``run`` with the garbage collector paused (after a collection), so that none falls inside."""
    gc.collect()
    gc.disable()
    try:
        return await run
    finally:
        gc.enable()


async def planning(tokens: int, runs: int) -> None:
    """The planner alone (see the module docstring)."""
    text, _, _ = plant_needles(document_of(tokens), 60)
    part_tokens = settings_of(create_rlm_graph(InstantReader(), cache=False)).budget_for(QUESTION)["part_tokens"]
    counter = TiktokenCounter()
    counted: list[int] = []

    def tokenizer(texts: Sequence[str]) -> list[int]:
        counted.append(len(texts))
        return counter.count_many(texts)

    def free(texts: Sequence[str]) -> list[int]:
        return [len(t) // 4 for t in texts]

    rows: dict[str, list[float]] = {"tokenizer": [], "free counter": []}
    for _ in range(runs):
        for label, count_many in (("tokenizer", tokenizer), ("free counter", free)):
            floor = floor_seconds(text)
            started = time.perf_counter()
            plan_leaves(text, part_tokens=part_tokens, count_many=count_many)
            rows[label].append((time.perf_counter() - started) / floor)
    leaves = len(plan_leaves(text, part_tokens=part_tokens, count_many=counter.count_many))
    print(f"plan_leaves, about {tokens:,} tokens, {leaves} leaves, {runs} runs each (x the floor)")
    for label, ratios in rows.items():
        print(f"  {label:<12} median {statistics.median(ratios):.3f}x  ({min(ratios):.3f}x to {max(ratios):.3f}x)")
    print(f"  texts given to the tokenizer: {sum(counted) // runs:,} a plan, in {len(counted) // runs} calls")


async def _busy(stop: asyncio.Event, work: int, waits: list[float]) -> None:
    """Python work in slices of ``sum(range(work))``, giving the loop back after each one."""
    last = time.perf_counter()
    while not stop.is_set():
        sum(range(work))
        await asyncio.sleep(0)
        now = time.perf_counter()
        waits.append(now - last)
        last = now


async def beside_busy_loop(text: str, work: int | None, mode: str = "full") -> dict:
    """One run of ours with a busy coroutine on the same loop (none when ``work`` is None)."""
    graph = create_rlm_graph(InstantReader(keep_prompts=False), cache=False, mode=mode)
    floor = floor_seconds(text)
    stop, waits = asyncio.Event(), [0.0]
    other = None if work is None else asyncio.create_task(_busy(stop, work, waits))
    started = time.perf_counter()
    planned = None
    async for event in graph.astream({"document": text, "question": QUESTION}, stream_mode="custom"):
        if planned is None and isinstance(event, dict) and (event.get("stage"), event.get("status")) == ("split", "done"):
            planned = time.perf_counter() - started
    wall = time.perf_counter() - started
    stop.set()
    if other is not None:
        await other
    return {"planning": planned / floor, "wall": wall / floor, "longest_wait": max(waits)}


async def busy_loop(tokens: int, runs: int, mode: str = "full") -> None:
    """Ours alone and beside a busy coroutine (see the module docstring)."""
    text, _, _ = plant_needles(document_of(tokens), 60)
    print(f"{mode} mode, about {tokens:,} tokens, {runs} runs each (x the floor; median)")
    for label, work in (("alone", None), ("busy, 0.03 ms slices", 2_000), ("busy, 0.3 ms slices", 20_000)):
        measured = [await beside_busy_loop(text, work, mode) for _ in range(runs)]
        planning = statistics.median(row["planning"] for row in measured)
        wall = statistics.median(row["wall"] for row in measured)
        wait = max(row["longest_wait"] for row in measured) * 1000
        print(f"  {label:<21} planning {planning:6.2f}x, run {wall:6.2f}x, longest wait of the other coroutine {wait:.0f} ms")


async def _navigate_once(text: str, first_call: dict | None) -> tuple[float, float]:
    """One navigate run (``first_call``, then the answer) and the longest wait of a coroutine beside it."""
    final = calls(call("final", answer="done", citations=[]))
    script = [calls(first_call), final] if first_call is not None else [final]
    navigator = ScriptedNavigator(reader=InstantReader(keep_prompts=False), script=script, window=WINDOW)
    graph = create_rlm_graph(navigator, context_window=WINDOW, cache=False, mode="navigate")
    stop, waits = asyncio.Event(), [0.0]
    other = asyncio.create_task(_busy(stop, 0, waits))
    started = time.perf_counter()
    await graph.ainvoke({"document": text, "question": QUESTION})
    wall = time.perf_counter() - started
    stop.set()
    await other
    return wall, max(waits)


async def navigate_waits(tokens: int, runs: int) -> None:
    """Navigate mode beside an idle coroutine (see the module docstring)."""
    text, _, _ = plant_needles(document_of(tokens), 60)
    print(f"navigate mode, about {tokens:,} tokens, {runs} runs each (wall: median; wait: longest)")
    for label, first_call in (
        ("answer at once", None),
        ("search", call("search", query="NEEDLE code", k=5)),
        ("grep", call("grep", pattern=r"NEEDLE-\d{4}", max_hits=20)),
        ("ask_all count", call("ask_all", question="How many NEEDLE codes?", output="count")),
    ):
        measured = [await _navigate_once(text, first_call) for _ in range(runs)]
        wall = statistics.median(row[0] for row in measured)
        wait = max(row[1] for row in measured) * 1000
        print(f"  {label:<15} run {wall:5.2f} s, longest wait of the other coroutine {wait:4.0f} ms")


async def main(tokens: int, runs: int) -> None:
    text, _, _ = plant_needles(document_of(tokens), 60)
    doc_tokens = TiktokenCounter().count(text)
    part_tokens = settings_of(create_rlm_graph(InstantReader(), cache=False)).budget_for(QUESTION)["part_tokens"]
    ratios: dict[str, list[float]] = {"rlm-graph": [], "map-reduce": []}
    for _ in range(runs):
        ours = await overhead(text, doc_tokens)
        ratios["rlm-graph"].append(ours["wall"] / ours["floor"])
        theirs = await map_reduce_overhead(text, part_tokens)
        ratios["map-reduce"].append(theirs["wall"] / theirs["floor"])
    print(f"{doc_tokens:,} tokens, {runs} interleaved runs each (run / tokenize once)")
    for name, values in ratios.items():
        print(f"  {name:<11} median {statistics.median(values):.2f}x  ({min(values):.2f}x to {max(values):.2f}x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--parts", action="store_true", help="time planning, nesting and reading apart")
    parser.add_argument("--planning", action="store_true", help="the planner alone, with and without the tokenizer")
    parser.add_argument("--nesting", action="store_true", help="one nested invocation: ours and LangGraph's floor")
    parser.add_argument("--busy-loop", action="store_true", help="run beside a busy coroutine on the same loop")
    parser.add_argument("--navigate", action="store_true", help="navigate mode: how long the loop is held")
    parser.add_argument("--focused", action="store_true", help="with --busy-loop: focused mode (builds an index)")
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after the imports, as a server may")
    arguments = parser.parse_args()
    if arguments.gc_freeze:
        gc.collect()
        gc.freeze()
    beside = functools.partial(busy_loop, mode="focused" if arguments.focused else "full")
    modes = {"parts": parts, "planning": planning, "nesting": nesting, "busy_loop": beside, "navigate": navigate_waits}
    mode = next((run for flag, run in modes.items() if getattr(arguments, flag)), main)
    asyncio.run(mode(arguments.tokens, arguments.runs))

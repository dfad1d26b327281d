"""What locating a reading's quotes costs, and how long it holds an async run's event loop.

    .venv/bin/python bench/quotes.py

Prints, for one 16K-token part of Frankenstein (about 65,000 characters):

1. the time to locate quotes of each kind (as written, a dropped word, 8,000 characters
   with one changed word, 8,000 characters not in the part), median of 5;
2. what rapidfuzz's tolerant search would cost on the whole 8,000-character quote, and
   that a thread does not free the event loop meanwhile (rapidfuzz keeps the GIL);
3. the longest event-loop stall of an async graph run whose reading quotes 8,000
   characters that are not in its part (the r30 reproduction), beside one whose quote is
   in the part as written.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rapidfuzz import fuzz

from rlm_graph import create_rlm_graph
from rlm_graph.prompts import NO_RELEVANT_INFORMATION
from rlm_graph.quotes import _normalized, locate_quote
from tests.fakes import ScriptedReader, part_text

BOOK = (Path(__file__).resolve().parent.parent / "tests" / "data" / "frankenstein.txt").read_text()
PART = BOOK[:65_000]
INSIDE = PART[20_000:28_000]
ELSEWHERE = " ".join(BOOK[300_000:308_000].split())


def _median_ms(work: Callable[[], Any], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def _sentence() -> str:
    start = PART.index(". ", 30_000) + 2
    return " ".join(PART[start : PART.index(".", start) + 1].split())


def locating() -> None:
    sentence = _sentence()
    words = sentence.split()
    dropped = " ".join(words[:3] + words[4:])
    middle = INSIDE.index(" the ", 4_000)
    changed = INSIDE[:middle] + " a " + INSIDE[middle + 5 :]
    cases = {
        "sentence, as written": sentence,
        "sentence, a word dropped": dropped,
        "8,000 chars, as written": INSIDE,
        "8,000 chars, a word changed": changed,
        "8,000 chars, not in the part": ELSEWHERE,
    }
    print("1. locate_quote on a 65,000-character part (median of 5)")
    # Done once per part, when a quote is not found as written; included in each line below.
    print(f"   {'normalizing the part':30} {_median_ms(lambda: _normalized(PART)):8.1f} ms")
    for name, quote in cases.items():
        found = locate_quote(quote, PART) is not None
        print(f"   {name:30} {_median_ms(lambda q=quote: locate_quote(q, PART)):8.1f} ms  found={found}")


async def _longest_stall(work: Callable[[], Any]) -> float:
    gaps: list[float] = []
    done = False

    async def heartbeat() -> None:
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.02)
    await work()
    done = True
    await beat
    return max(gaps)


def whole_quote_search() -> None:
    norm_quote, norm_part = ELSEWHERE.casefold(), PART.casefold()
    print("2. rapidfuzz partial_ratio_alignment on the whole 8,000-character quote (what the bound avoids)")
    started = time.perf_counter()
    fuzz.partial_ratio_alignment(norm_quote, norm_part, score_cutoff=85)
    print(f"   on the loop's thread: {time.perf_counter() - started:.2f} s")

    async def in_thread() -> None:
        await asyncio.to_thread(fuzz.partial_ratio_alignment, norm_quote, norm_part, score_cutoff=85)

    print(f"   in asyncio.to_thread: longest loop stall {asyncio.run(_longest_stall(in_thread)):.2f} s (GIL kept)")


async def _graph_run(quote: str) -> tuple[float, dict[str, Any]]:
    def reply(prompt: str, kind: str) -> str:
        if kind == "read":
            if INSIDE[:200] in part_text(prompt):
                return f'The part tells how Victor travels.\nQUOTE: "{quote}"'
            return NO_RELEVANT_INFORMATION
        return "Victor travels [F1]." if kind == "synth" else "?"

    model = ScriptedReader(reply=reply, window=32_768, reserved_output=2_048)
    graph = create_rlm_graph(model, max_output_tokens=2_048, cache=False)
    out: dict[str, Any] = {}

    async def run() -> None:
        out.update(await graph.ainvoke({"document": BOOK[:130_000], "question": "Where does Victor travel?"}))

    return await _longest_stall(run), out


def graph_runs() -> None:
    print("3. async graph run on 130,000 characters (two parts), longest event-loop stall")
    asyncio.run(_graph_run(INSIDE))  # warm-up: tokenizer and first-use costs
    for name, quote in (("quote in the part as written", INSIDE), ("quote not in the part", ELSEWHERE)):
        stall, out = asyncio.run(_graph_run(quote))
        unsupported = out["usage"].get("unsupported_quotes", 0)
        print(f"   {name:30} {stall:.3f} s  unsupported_quotes={unsupported}")


if __name__ == "__main__":
    locating()
    whole_quote_search()
    graph_runs()

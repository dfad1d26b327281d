"""Needle recall and orchestration cost with a zero-latency perfect reader.

Prints one row per document size: tokens, wall time of a full run, the time to
tokenize the document once with tiktoken (the floor), model calls, depth, calls that
overflowed the window, and how many planted facts reached the answer.

    .venv/bin/python bench/recall.py            # 100K and 1M tokens
    .venv/bin/python bench/recall.py --10m      # also 10M tokens (several minutes)
"""

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rlm_graph import create_rlm_graph
from rlm_graph.tokens import TiktokenCounter, cl100k_base
from tests.fakes import PerfectReader, plant_needles

BOOKS = [
    ROOT / "tests/data/frankenstein.txt",
    ROOT / "tests/data/kalevala.txt",
    ROOT / "examples/pride_and_prejudice.txt",
]


def document_of(tokens: int) -> str:
    counter = TiktokenCounter()
    books = [path.read_text(encoding="utf-8") for path in BOOKS]
    sizes = [counter.count(book) for book in books]
    parts, total = [], 0
    while total < tokens:
        for book, size in zip(books, sizes, strict=True):
            parts.append(book)
            total += size
            if total >= tokens:
                break
    text = "\n\n".join(parts)
    # Cut at exactly ``tokens`` tokens (then back to the last paragraph break).
    encoding = cl100k_base()
    cut = encoding.decode(encoding.encode_ordinary(text)[:tokens])
    return cut[: cut.rfind("\n\n")] if "\n\n" in cut[len(cut) // 2 :] else cut


async def measure(tokens: int, needles: int) -> None:
    text, facts, _ = plant_needles(document_of(tokens), needles)
    counter = TiktokenCounter()
    started = time.perf_counter()
    exact = counter.count(text)
    floor = time.perf_counter() - started
    model = PerfectReader(window=8192, reserved_output=1024)
    graph = create_rlm_graph(model, max_output_tokens=1024)
    started = time.perf_counter()
    out = await graph.ainvoke({"document": text, "question": "List every NEEDLE code."})
    wall = time.perf_counter() - started
    found = sum(fact in out["answer"] for fact in facts)
    print(
        f"{exact:>11,} {wall:>8.2f}s {floor:>7.2f}s {wall / floor:>6.1f}x {out['usage']['llm_calls']:>7} "
        f"{out['usage']['max_depth']:>5} {model.overflows:>9} {found:>5}/{len(facts)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--10m", dest="ten_million", action="store_true", help="also run 10M tokens")
    args = parser.parse_args()
    print("window 8,192 tokens, 1,024 reserved for output, perfect reader with no latency")
    print(
        f"{'tokens':>11} {'run':>9} {'tokenize':>8} {'ratio':>7} {'calls':>7} "
        f"{'depth':>5} {'overflows':>9} {'facts':>9}"
    )
    sizes = [(100_000, 40), (1_000_000, 120)] + ([(10_000_000, 400)] if args.ten_million else [])
    for tokens, needles in sizes:
        asyncio.run(measure(tokens, needles))


if __name__ == "__main__":
    main()

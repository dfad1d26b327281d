"""Time to the first progress event and to the first model call, against the whole run.

    .venv/bin/python bench/first_call.py            # 1M and 10M tokens
    .venv/bin/python bench/first_call.py --sizes 1000000

A zero-latency reader (``bench.run.InstantReader``) notes when it is first called;
the progress events are read from ``astream(stream_mode="custom")``. Planning a
long document tokenizes all of it; without a budget, ``split`` plans section by
section and starts reading the first parts at once (``rlm_graph.read_ahead``), so
the first call no longer waits for the whole plan. The same run with a call budget
(which must check the whole plan first) is printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.instant import QUESTION, InstantReader, floor_seconds
from bench.recall import document_of
from rlm_graph import create_rlm_graph
from tests.fakes import plant_needles


class TimedReader(InstantReader):
    """The instant reader, noting the time of its first call."""

    first_call: float | None = None

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any) -> Any:
        if self.first_call is None:
            self.first_call = time.perf_counter()
        return super()._generate(messages, stop, run_manager, **kw)


async def timings(text: str, **options: Any) -> dict[str, float]:
    """Seconds from the start to the first progress event, the split's first read, the first call and the end."""
    model = TimedReader(keep_prompts=False)
    graph = create_rlm_graph(model, cache=False, **options)
    started = time.perf_counter()
    first_event = planned = None
    async for event in graph.astream({"document": text, "question": QUESTION}, stream_mode="custom"):
        now = time.perf_counter() - started
        if event.get("type") != "progress":
            continue
        first_event = first_event if first_event is not None else now
        if event["stage"] == "split" and event["status"] == "done" and event["depth"] == 0:
            planned = now
    wall = time.perf_counter() - started
    if model.first_call is None or first_event is None or planned is None:
        raise RuntimeError("the run made no call or sent no split event")
    return {"event": first_event, "call": model.first_call - started, "planned": planned, "wall": wall}


async def main(sizes: list[int]) -> None:
    print("first progress event and first model call (instant model, 8K window)")
    print(
        f"{'tokens':>11} {'plan':<16} {'1st event':>9} {'1st call':>9} {'planned':>8} {'run':>7} {'floor':>7}"
    )
    for tokens in sizes:
        text, _, _ = plant_needles(document_of(tokens), 60)
        floor = floor_seconds(text)
        for label, options in (("read while plan", {}), ("budget: plan 1st", {"max_llm_calls": 10**6})):
            row = await timings(text, **options)
            print(
                f"{tokens:>11,} {label:<16} {row['event']:>8.3f}s {row['call']:>8.3f}s {row['planned']:>7.2f}s "
                f"{row['wall']:>6.2f}s {floor:>6.2f}s"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    asyncio.run(main(parser.parse_args().sizes))

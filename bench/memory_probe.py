"""Prints the RSS before a document is read and the peak RSS while it is read and answered.

.venv/bin/python bench/memory_probe.py DOCUMENT_FILE
"""

import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.instant import QUESTION, InstantReader
from rlm_graph import create_rlm_graph

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


def main(path: str) -> None:
    graph = create_rlm_graph(InstantReader(keep_prompts=False), cache=False)
    graph.invoke({"document": "warm up. " * 10, "question": QUESTION})
    base = rss()
    peak = base
    running = True

    def sample() -> None:
        nonlocal peak
        while running:
            peak = max(peak, rss())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    text = Path(path).read_text(encoding="utf-8")
    asyncio.run(graph.ainvoke({"document": text, "question": QUESTION}))
    running = False
    sampler.join()
    print(json.dumps({"base": base, "peak": max(peak, rss()), "bytes": len(text.encode())}))


if __name__ == "__main__":
    main(sys.argv[1])

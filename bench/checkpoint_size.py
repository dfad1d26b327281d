"""How large the checkpoints of one run get, on SQLite.

    .venv/bin/python bench/checkpoint_size.py            # 1M tokens
    .venv/bin/python bench/checkpoint_size.py 100000     # another size

Prints the document's size, the number and bytes of checkpoints and of pending
writes, and the database file's size.
"""

import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from bench.recall import document_of
from rlm_graph import create_rlm_graph
from tests.fakes import PerfectReader, plant_needles


async def main(tokens: int) -> None:
    text, _, _ = plant_needles(document_of(tokens), 50)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "checkpoints.sqlite"
        async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
            graph = create_rlm_graph(PerfectReader(), checkpointer=saver)
            started = time.perf_counter()
            out = await graph.ainvoke(
                {"document": text, "question": "List every NEEDLE code."}, {"configurable": {"thread_id": "size"}}
            )
            wall = time.perf_counter() - started
        db = sqlite3.connect(path)
        checkpoints, checkpoint_bytes = db.execute(
            "select count(*), sum(length(checkpoint)) from checkpoints"
        ).fetchone()
        writes, write_bytes = db.execute("select count(*), sum(length(value)) from writes").fetchone()
        size = path.stat().st_size
    document_bytes = len(text.encode())
    print(
        f"document: {tokens:,} tokens, {document_bytes / 1e6:.1f} MB; "
        f"run {wall:.1f} s, {out['usage']['llm_calls']} calls"
    )
    print(f"checkpoints: {checkpoints} rows, {checkpoint_bytes / 1e6:.1f} MB")
    print(f"writes: {writes} rows, {write_bytes / 1e6:.1f} MB")
    print(f"database file: {size / 1e6:.1f} MB = {size / document_bytes:.1f}x the document")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000))

"""Runs one analysis with a durable checkpointer; the resume tests kill it with SIGKILL.

    python -m tests.resume_worker BASE_URL SAVER TARGET THREAD DOCUMENT_FILE start|resume [RLM_MODE]

SAVER is "sqlite" (TARGET a file path) or "postgres" (TARGET a connection string).
Prints the result as one JSON line when the run finishes.
"""

import asyncio
import json
import sys
from contextlib import asynccontextmanager

from langchain_openai import ChatOpenAI
from langgraph.types import RetryPolicy

from rlm_graph import create_rlm_graph, is_transient_error

QUESTION = "List every NEEDLE code."


@asynccontextmanager
async def saver(kind: str, target: str):
    if kind == "sqlite":
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with AsyncSqliteSaver.from_conn_string(target) as checkpointer:
            yield checkpointer
    else:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        async with AsyncPostgresSaver.from_conn_string(target) as checkpointer:
            await checkpointer.setup()
            yield checkpointer


async def main(
    base_url: str, kind: str, target: str, thread: str, document_file: str, mode: str, rlm_mode: str = "full"
) -> None:
    model = ChatOpenAI(model="local", base_url=base_url, api_key="x", max_retries=0, timeout=10)
    retry = RetryPolicy(initial_interval=0.05, max_attempts=3, retry_on=is_transient_error)
    async with saver(kind, target) as checkpointer:
        graph = create_rlm_graph(
            model,
            context_window=8192,
            max_concurrency=2,
            checkpointer=checkpointer,
            retry_policy=retry,
            mode=rlm_mode,
        )
        config = {"configurable": {"thread_id": thread}}
        if mode == "start":
            with open(document_file, encoding="utf-8") as handle:
                payload = {"document": handle.read(), "question": QUESTION}
        else:
            payload = None
        out = await graph.ainvoke(payload, config, durability="sync")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:8]))

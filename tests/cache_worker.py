"""One worker process answering one question with the reply cache in a shared Redis.

    python -m tests.cache_worker BASE_URL REDIS_URL DOCUMENT_FILE QUESTION

Prints the result as one JSON line when the run finishes.
"""

import asyncio
import json
import sys

import redis
from langchain_openai import ChatOpenAI
from langgraph.cache.redis import RedisCache

from rlm_graph import create_rlm_graph


async def main(base_url: str, redis_url: str, document_file: str, question: str) -> None:
    model = ChatOpenAI(model="local", base_url=base_url, api_key="x", max_retries=0, timeout=10)
    # LangGraph's RedisCache takes a synchronous client and stores raw bytes.
    cache = RedisCache(redis.Redis.from_url(redis_url), prefix="rlm-test:")
    graph = create_rlm_graph(model, context_window=8192, max_concurrency=4, cache=cache)
    with open(document_file, encoding="utf-8") as handle:
        document = handle.read()
    out = await graph.ainvoke({"document": document, "question": question})
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))

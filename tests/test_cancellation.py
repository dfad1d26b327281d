"""Cancelling a run closes its in-flight HTTP requests; the server sees them go."""

import asyncio
import socket
import threading
import time

import httpx
import pytest
from langchain_openai import ChatOpenAI

from rlm_graph import create_rlm_graph
from tests.openai_server import ChatServer


def slow_model(server: ChatServer) -> ChatOpenAI:
    return ChatOpenAI(model="local", base_url=server.base_url, api_key="x", max_retries=0, timeout=60)


async def wait_for(condition, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_task_cancellation_closes_requests(frankenstein: str) -> None:
    with ChatServer(delay=30) as server:
        graph = create_rlm_graph(slow_model(server), context_window=8192, max_concurrency=3)
        run = asyncio.create_task(graph.ainvoke({"document": frankenstein, "question": "Who is Victor?"}))
        await wait_for(lambda: len(server.log) == 3)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        await wait_for(lambda: all(r.outcome != "pending" for r in server.log))
        assert [r.client_closed for r in server.log] == [True, True, True]
        await asyncio.sleep(0.5)
        assert len(server.log) == 3  # nothing new was sent after the cancel


async def test_client_disconnect_in_the_web_app_cancels_the_run(frankenstein: str) -> None:
    uvicorn = pytest.importorskip("uvicorn")
    from examples.web.app import create_app

    with ChatServer(delay=30) as server:
        app = create_app(create_rlm_graph(slow_model(server), context_window=8192, max_concurrency=2))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        web = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=web.run, daemon=True)
        thread.start()
        await wait_for(lambda: web.started)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            stored = (await client.post("/api/documents", data={"text": frankenstein})).json()
            async with client.stream("GET", "/api/ask", params={"doc": stored["id"], "q": "Who is Victor?"}) as stream:
                async for line in stream.aiter_lines():
                    if len(server.log) >= 2:
                        break
                    del line
            # Leaving the block closes the connection, as a closed browser tab does.
        await wait_for(lambda: len(server.log) >= 2 and all(r.outcome != "pending" for r in server.log))
        assert all(r.client_closed for r in server.log)
        web.should_exit = True
        thread.join(timeout=10)

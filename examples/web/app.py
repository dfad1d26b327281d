"""A chat page with live progress: Starlette, server-sent events and one static page.

    pip install -e ".[web]"
    uvicorn examples.web.app:app --port 8000      # then open http://127.0.0.1:8000

Paste or upload a document, ask questions, watch one progress bar per stage, and
click a citation to highlight the cited text. Offline it uses the bundled
extractive model; with OPENAI_API_KEY or OPENAI_BASE_URL it uses ChatOpenAI.
Closing the page (or the connection) cancels the run.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from langgraph.graph.state import CompiledStateGraph
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from rlm_graph import create_rlm_graph, model_from_env

PAGE = Path(__file__).with_name("index.html")
MAX_DOCUMENTS = 100
HEARTBEAT_SECONDS = 0.5


def _sse(event: str, data: object) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def create_app(graph: CompiledStateGraph | None = None) -> Starlette:
    """Build the web app.

    Args:
        graph: The analysis graph; defaults to one on ``model_from_env()``.

    Returns:
        The Starlette app.
    """
    model, note = model_from_env()
    analysis = graph if graph is not None else create_rlm_graph(model)
    documents: dict[str, str] = {}

    async def page(_: Request) -> Response:
        return FileResponse(PAGE, media_type="text/html")

    async def info(_: Request) -> Response:
        return JSONResponse({"model": note})

    async def upload(request: Request) -> Response:
        form = await request.form()
        field = form.get("file") or form.get("text")
        if field is None:
            return JSONResponse({"error": "send the document as 'text' or 'file'"}, status_code=400)
        raw = await field.read() if hasattr(field, "read") else str(field).encode()
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        if len(documents) >= MAX_DOCUMENTS:
            documents.pop(next(iter(documents)))
        key = uuid.uuid4().hex
        documents[key] = text
        return JSONResponse({"id": key, "chars": len(text), "text": text})

    async def ask(request: Request) -> Response:
        document = documents.get(request.query_params.get("doc", ""))
        question = request.query_params.get("q", "")
        if document is None:
            return JSONResponse({"error": "unknown document; upload it first"}, status_code=404)

        async def run(queue: asyncio.Queue) -> None:
            result: dict = {}
            try:
                async for namespace, mode, chunk in analysis.astream(
                    {"document": document, "question": question},
                    stream_mode=["custom", "values"],
                    subgraphs=True,
                ):
                    if mode == "custom":
                        await queue.put(_sse(chunk["type"], chunk))
                    elif namespace == ():
                        result = {k: chunk.get(k) for k in ("answer", "citations", "usage", "errors")}
                await queue.put(_sse("result", result))
            except Exception as exc:  # noqa: BLE001 - the page must learn why the run failed
                await queue.put(_sse("failure", {"error": f"{type(exc).__name__}: {exc}"}))
            finally:
                await queue.put(None)

        async def events() -> AsyncIterator[str]:
            queue: asyncio.Queue = asyncio.Queue()
            task = asyncio.create_task(run(queue))
            try:
                while True:
                    try:
                        item = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
                    except TimeoutError:
                        if await request.is_disconnected():
                            return
                        yield ": still working\n\n"  # a comment line; a closed connection fails here
                        continue
                    if item is None:
                        return
                    yield item
            finally:
                # The page went away (or the run ended): cancelling the run closes its HTTP calls.
                task.cancel()

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    return Starlette(
        routes=[
            Route("/", page),
            Route("/api/info", info),
            Route("/api/documents", upload, methods=["POST"]),
            Route("/api/ask", ask),
            Route("/favicon.ico", lambda _: Response(status_code=204)),
        ]
    )


app = create_app()

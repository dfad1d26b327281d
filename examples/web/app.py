"""A chat page with live progress: Starlette, server-sent events and one static page.

    pip install -e ".[web]"
    uvicorn examples.web.app:app --port 8000      # then open http://127.0.0.1:8000

Paste or upload a document (text, Markdown, HTML, PDF or DOCX; PDF and DOCX need
the ``documents`` extra), ask questions, watch one progress bar per stage, and
click a citation (or an answer's ``[n]`` marker) to highlight the cited text: a quote
strongly, a part-level citation faintly with its nearest sentence strongly. Text files
are read by the one offsets rule (``rlm_graph.documents.normalize_text``: byte-order
mark removed, line ends as LF), in the page and here alike. For an uploaded PDF, DOCX or HTML
file the server replies with the extracted text, which the page shows and the
citations' offsets refer to; a PDF's citations also carry ``page`` and ``last_page``. Offline it uses the bundled
extractive model; with OPENAI_API_KEY or OPENAI_BASE_URL it uses ChatOpenAI (RLM_MODEL
and RLM_CONTEXT_WINDOW name the model and its window; see ``rlm_graph.model_from_env``).
Closing the page (or the connection) cancels the run.

A second page, ``/chat``, is a conversation (``examples/chat_service.py``'s chat
graph, one checkpointed thread per browser tab): a button loads a long scripted
thread (``examples/long_thread.py``, 400 turns), and asking about an early turn
("Remind me: what was NEEDLE-0007?") shows the history hook's progress and a reply
citing the earlier messages it comes from; clicking a citation shows that message.

Documents are limited in size (``RLM_WEB_MAX_DOCUMENT_MB``, 20 by default, or
``create_app(max_document_bytes=...)``); a larger one gets HTTP 413 with a JSON
message naming the limit. Every error reply is JSON: ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path

from langchain_core.messages import BaseMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from examples.chat_service import build_chat_graph
from examples.long_thread import scripted_thread
from rlm_graph import create_rlm_graph, model_from_env
from rlm_graph.documents import ExtractedDocument
from rlm_graph.errors import describe_error
from rlm_graph.file_input import BadInputError, read_document_in_steps
from rlm_graph.steps import arun_steps

__all__ = ["DEFAULT_MAX_DOCUMENT_BYTES", "app", "create_app"]

PAGE = Path(__file__).with_name("index.html")
CHAT_PAGE = Path(__file__).with_name("chat.html")
COMMON_SCRIPT = Path(__file__).with_name("common.js")
MAX_DOCUMENTS = 100
MAX_THREADS = 100
MAX_SCRIPTED_TURNS = 1000
SCRIPTED_AS_NODE = "small_talk"
"""The chat graph's node a scripted thread is written as (one whose next step is the end)."""
HEARTBEAT_SECONDS = 0.5
DEFAULT_MAX_DOCUMENT_BYTES = 20 * 1024 * 1024
"""Largest document accepted, in bytes of UTF-8 (a 1M-token book is about 4 MB)."""
PREVIEW_CHARS = 200
# Multipart boundaries and headers around the document itself.
_FORM_OVERHEAD = 64 * 1024


def _sse(event: str, data: object) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


class _TooLargeError(Exception):
    """The request body is over the document limit."""


async def _json_body(request: Request, limit: int) -> object:
    """The request's JSON body, read no further than ``limit`` bytes."""
    body = bytearray()
    async for piece in request.stream():
        body.extend(piece)
        if len(body) > limit:
            raise _TooLargeError
    return json.loads(body)


def _refuse(request: Request, message: str, status: int) -> Response:
    if "text/event-stream" in request.headers.get("accept", ""):
        # An EventSource cannot read an error body: say it as the stream's failure event.
        return StreamingResponse(iter([_sse("failure", {"error": message})]), media_type="text/event-stream")
    return _error(message, status)


def _stream(request: Request, run: Callable[[asyncio.Queue], Coroutine[object, object, None]]) -> Response:
    """Server-sent events that ``run`` puts on a queue (``None`` ends them); a closed page cancels the run."""

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


def _message(message: BaseMessage) -> dict[str, str | None]:
    """A message as the conversation page shows it."""
    return {"id": message.id, "role": "user" if message.type == "human" else "assistant", "text": message.text}


def _cited(text: str, earlier: list[BaseMessage]) -> list[str]:
    """Ids of ``earlier`` messages that ``text`` names, in the order it names them."""
    known = {message.id for message in earlier}
    return list(dict.fromkeys(word for word in re.findall(r"[\w-]+", text) if word in known))


def _limit_from_env() -> int:
    value = os.environ.get("RLM_WEB_MAX_DOCUMENT_MB")
    return int(float(value) * 1024 * 1024) if value else DEFAULT_MAX_DOCUMENT_BYTES


def create_app(
    graph: CompiledStateGraph | None = None,
    *,
    max_document_bytes: int | None = None,
    chat: CompiledStateGraph | None = None,
) -> Starlette:
    """Build the web app.

    Args:
        graph: The analysis graph; defaults to one on ``model_from_env()``.
        max_document_bytes: Largest document accepted (UTF-8 bytes); default
            ``RLM_WEB_MAX_DOCUMENT_MB`` megabytes, else 20 MiB.
        chat: The conversation page's graph, compiled with a checkpointer; defaults to
            ``examples/chat_service.py``'s chat graph on the same model, in memory. A
            scripted thread is written to it as node :data:`SCRIPTED_AS_NODE`.

    Returns:
        The Starlette app.
    """
    limit = max_document_bytes if max_document_bytes is not None else _limit_from_env()
    if limit < 1:
        msg = f"max_document_bytes must be at least 1, got {limit}"
        raise ValueError(msg)
    model, note = model_from_env()
    analysis = graph if graph is not None else create_rlm_graph(model)
    documents: dict[str, ExtractedDocument] = {}
    chat = chat if chat is not None else build_chat_graph(model, checkpointer=InMemorySaver())
    threads: dict[str, None] = {}  # the conversations this server started, oldest first

    def too_large(size: int | None = None) -> JSONResponse:
        said = f"the document is {_mib(size)}; " if size is not None else "the document is too large; "
        message = f"{said}this server accepts documents up to {_mib(limit)} ({limit} bytes)"
        return JSONResponse({"error": message, "limit_bytes": limit}, status_code=413)

    async def page(_: Request) -> Response:
        return FileResponse(PAGE, media_type="text/html")

    async def common_script(_: Request) -> Response:
        return FileResponse(COMMON_SCRIPT, media_type="text/javascript")

    async def info(_: Request) -> Response:
        return JSONResponse({"model": note, "max_document_bytes": limit})

    async def read_upload(request: Request) -> tuple[str, bytes, str | None] | Response:
        """The upload's name, bytes and mime type, or the error reply."""
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit + _FORM_OVERHEAD:
            return too_large(int(length))
        if request.headers.get("content-type", "").startswith("application/json"):
            # The page sends pasted text as JSON: multipart would turn its line breaks into CRLF.
            try:
                body = await _json_body(request, limit + _FORM_OVERHEAD)
            except _TooLargeError:
                return too_large()
            except ValueError as exc:
                return _error(f"the body is not valid JSON: {exc}", 400)
            text = body.get("text") if isinstance(body, dict) else None
            if not isinstance(text, str):
                return _error('send the document as JSON {"text": "..."}, or as a form field \'text\' or \'file\'', 400)
            return "pasted text", text.encode("utf-8", errors="surrogatepass"), "text/plain"
        try:
            # A pasted form field may be as large as a document (Starlette's default is 1 MiB).
            form = await request.form(max_files=1, max_fields=8, max_part_size=limit + 1)
        except MultiPartException as exc:
            if "maximum size" in str(exc):
                return too_large()
            return _error(f"the upload could not be read: {exc}", 400)
        field = form.get("file") or form.get("text")
        if field is None:
            return _error("send the document as a form field 'text' or 'file', or as JSON {\"text\": \"...\"}", 400)
        if isinstance(field, str):
            return "pasted text", field.encode("utf-8", errors="surrogatepass"), "text/plain"
        # A file is spooled to disk by the parser; only the allowed size is read into memory.
        raw = await field.read(limit + 1)
        return field.filename or "the file", raw, field.content_type

    async def upload(request: Request) -> Response:
        received = await read_upload(request)
        if isinstance(received, Response):
            return received
        name, raw, mime_type = received
        if len(raw) > limit:
            return too_large(len(raw))
        try:
            # Page by page on the loop: a long PDF would hold every other request for seconds.
            document = await arun_steps(read_document_in_steps(raw, "utf-8", name, mime_type))
        except BadInputError as exc:
            if exc.reason == "encoding":
                message = f"{name} is not valid UTF-8: save it as UTF-8 first (for example: iconv -f latin1 -t utf-8)"
                return _error(message, 415)
            return _error(str(exc).replace("pass --encoding utf-16", "save it as UTF-8 first"), 415)
        if len(documents) >= MAX_DOCUMENTS:
            documents.pop(next(iter(documents)))
        key = uuid.uuid4().hex
        documents[key] = document
        text = document.text
        reply = {
            "id": key,
            "chars": len(text),
            "bytes": len(raw),
            "sha256": hashlib.sha256(raw).hexdigest(),
            "preview": text[:PREVIEW_CHARS],
        }
        if document.format in {"pdf", "docx", "html"}:
            # The page cannot extract the text itself, and offsets refer to the extracted text: send it.
            reply |= {"format": document.format, "text": text}
            reply |= {"pages": [[p.start, p.end, p.number] for p in document.pages]} if document.pages else {}
        # Otherwise no echo: the page keeps the text it read; it checks ``chars`` against its own count.
        return JSONResponse(reply)

    async def ask(request: Request) -> Response:
        document = documents.get(request.query_params.get("doc", ""))
        question = request.query_params.get("q", "")
        if document is None:
            message = "unknown document (the server forgets old ones, and all on restart); upload it again"
            return _refuse(request, message, 404)
        if not question.strip():
            return _refuse(request, "the question is empty: ask something about the document", 400)

        async def run(queue: asyncio.Queue) -> None:
            result: dict = {}
            try:
                async for namespace, mode, chunk in analysis.astream(
                    {"document": document.text, "question": question},
                    stream_mode=["custom", "values"],
                    subgraphs=True,
                ):
                    if mode == "custom":
                        await queue.put(_sse(chunk["type"], chunk))
                    elif namespace == ():
                        result = {k: chunk.get(k) for k in ("answer", "usage", "errors")}
                        # A PDF's citations also name their pages.
                        result["citations"] = [document.cite(c) for c in chunk.get("citations") or []]
                await queue.put(_sse("result", result))
            except Exception as exc:  # noqa: BLE001 - the page must learn why the run failed
                await queue.put(_sse("failure", {"error": describe_error(exc)}))
            finally:
                await queue.put(None)

        return _stream(request, run)

    async def chat_page(_: Request) -> Response:
        return FileResponse(CHAT_PAGE, media_type="text/html")

    async def new_thread(request: Request) -> Response:
        """Start a conversation; ``?scripted=N`` fills it with N turns of the scripted thread."""
        turns = request.query_params.get("scripted", "0")
        if not turns.isdigit() or int(turns) > MAX_SCRIPTED_TURNS:
            return _error(f"scripted must be a number of turns from 0 to {MAX_SCRIPTED_TURNS}", 400)
        if len(threads) >= MAX_THREADS:
            oldest = next(iter(threads))
            threads.pop(oldest)
            await chat.checkpointer.adelete_thread(oldest)
        thread = uuid.uuid4().hex
        threads[thread] = None
        messages = scripted_thread(int(turns)) if int(turns) else []
        if messages:
            # As if the chat's last node had written them: the next message starts a new run after them.
            config = {"configurable": {"thread_id": thread}}
            await chat.aupdate_state(config, {"messages": messages}, as_node=SCRIPTED_AS_NODE)
        return JSONResponse({"thread": thread, "messages": [_message(m) for m in messages]})

    async def show_thread(request: Request) -> Response:
        thread = request.path_params["thread"]
        if thread not in threads:
            return _error("unknown conversation (the server forgets old ones, and all on restart)", 404)
        state = await chat.aget_state({"configurable": {"thread_id": thread}})
        return JSONResponse({"thread": thread, "messages": [_message(m) for m in state.values.get("messages", [])]})

    async def say(request: Request) -> Response:
        thread = request.query_params.get("thread", "")
        text = request.query_params.get("q", "")
        if thread not in threads:
            return _refuse(request, "unknown conversation (the server forgets old ones, and all on restart)", 404)
        if not text.strip():
            return _refuse(request, "the message is empty: type something first", 400)

        async def run(queue: asyncio.Queue) -> None:
            messages: list[BaseMessage] = []
            try:
                async for namespace, mode, chunk in chat.astream(
                    {"messages": [HumanMessage(text, id=uuid.uuid4().hex)]},
                    {"configurable": {"thread_id": thread}},
                    stream_mode=["custom", "values"],
                    subgraphs=True,
                ):
                    if mode == "custom":  # the history hook's events (stage "history") and the analysis graph's
                        await queue.put(_sse(chunk["type"], chunk))
                    elif namespace == ():
                        messages = chunk["messages"]
                asked, reply = _message(messages[-2]), _message(messages[-1])
                reply["cites"] = _cited(messages[-1].text, messages[:-2])
                await queue.put(_sse("result", {"messages": [asked, reply]}))
            except Exception as exc:  # noqa: BLE001 - the page must learn why the run failed
                await queue.put(_sse("failure", {"error": describe_error(exc)}))
            finally:
                await queue.put(None)

        return _stream(request, run)

    async def http_error(_: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else describe_error(exc)
        return _error(str(detail), status)

    return Starlette(
        exception_handlers={HTTPException: http_error, Exception: http_error},
        routes=[
            Route("/", page),
            Route("/common.js", common_script),
            Route("/api/info", info),
            Route("/api/documents", upload, methods=["POST"]),
            Route("/api/ask", ask),
            Route("/chat", chat_page),
            Route("/api/threads", new_thread, methods=["POST"]),
            Route("/api/threads/{thread}", show_thread),
            Route("/api/chat", say),
            Route("/favicon.ico", lambda _: Response(status_code=204)),
        ]
    )


app = create_app()

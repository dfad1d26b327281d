"""A local OpenAI-compatible chat server for integration tests (127.0.0.1 only).

It answers like the perfect reader (the NEEDLE facts visible in the prompt),
reports ``usage``, streams when asked, and refuses prompts over its window with
the 400 ``context_length_exceeded`` that OpenAI sends. It can inject faults: 429
with ``Retry-After``, 500, 503, hanging, dropped connections and malformed JSON,
at a seeded random rate, for the first N requests, or always for prompts holding a
marker. It logs every request (time, outcome, which part it read, whether the
client hung up before the answer) so tests can assert exactly what was called.

It learns ``response_format`` with ``json_schema`` as the real API does: the reply is a JSON
string in ``content`` that follows the schema (built from the same facts: a reading's
``relevant``/``findings``/``quotes``, a focused synthesis' ``answer``/``complete``, ...); with
``reject_response_format=True`` it refuses any ``response_format`` with a 400, like a server
that does not support structured replies. It records each request's ``response_format`` and
``max_tokens`` (or ``max_completion_tokens``) in its log.

Like OpenAI's service it caches prompt prefixes (the ``response_format`` schema, as the real
service does, is part of the prefix): a request whose first 1,024 tokens or
more repeat a prompt seen before reports them in ``prompt_tokens_details.cached_tokens``
(a first block of 1,024 tokens, then steps of 128; a prompt under 1,024 tokens is never cached). Message content may be
a string or a list of text blocks, which may carry Anthropic-style ``cache_control``
markers (counted per request in ``Request.cache_markers``, otherwise ignored).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage

from rlm_graph.prompts import NO_RELEVANT_INFORMATION
from rlm_graph.tokens import TiktokenCounter
from tests.fakes import NEEDLE

TRANSIENT_FAULTS = ("429", "500", "503", "hang", "drop", "malformed")
_PART = re.compile(r'<document_part start="(\d+)" end="(\d+)">')
PROMPT_CACHE_MIN = 1024
"""Shortest cached prefix, as OpenAI's service counts it."""
PROMPT_CACHE_STEP = 128
"""Past the first 1,024 tokens, cached prefixes grow in steps of this many tokens."""


def _content_text(content: Any) -> str:
    """The text of a message's content: a string, or a list of text blocks."""
    if content is None:
        return ""  # an assistant message that only calls tools
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content if isinstance(block, dict))


def _markers(content: Any) -> int:
    return sum(1 for block in content if isinstance(block, dict) and "cache_control" in block) if isinstance(
        content, list
    ) else 0


@dataclass
class Request:
    number: int
    started: float
    kind: str
    span: tuple[int, int] | None
    prompt_hash: str
    cache_markers: int = 0
    usage: dict[str, Any] | None = None
    """What the server reported for this request (``None`` when it did not answer)."""
    outcome: str = "pending"
    finished: float = 0.0
    client_closed: bool = False
    response_format: dict[str, Any] | None = None
    """The request's ``response_format``, if it had one."""
    max_tokens: int | None = None
    """The request's ``max_tokens`` or ``max_completion_tokens``, if it had one."""


@dataclass
class Faults:
    rate: float = 0.0
    kinds: tuple[str, ...] = TRANSIENT_FAULTS
    first: int = 0
    first_kind: str = "429"
    marker: str | None = None
    marker_kind: str = "503"
    retry_after: str | None = None
    seed: int = 1
    hang_seconds: float = 30.0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def pick(self, number: int, prompt: str) -> str | None:
        if self.marker and self.marker in prompt and '<finding id="' not in prompt:
            return self.marker_kind
        if number <= self.first:
            return self.first_kind
        if self.rate and self._rng.random() < self.rate:
            return self._rng.choice(self.kinds)
        return None


class _Server(ThreadingHTTPServer):
    """Quiet about clients that hang up: a keep-alive connection closed by its client is normal.

    The default prints a traceback from the handler's thread, and on Python 3.11 printing
    one parses source lines with ``ast`` (the caret anchors); the ``ast`` module's state is
    shared between threads, so a parse in the main thread at the same moment (pytest
    rewriting a module it imports late) fails with "AST constructor recursion depth mismatch".
    """

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def default_structured_reply(name: str, facts: list[str], schema: dict[str, Any], label: str = "") -> dict[str, Any]:
    """A perfect reader's structured reply: each property of the schema filled from the facts.

    Args:
        name: The schema's name (``reading``, ``focused_synthesis``, ``count``, ...).
        facts: The facts visible in the prompt.
        schema: The JSON schema.
        label: The server's label, written before the findings.

    Returns:
        The reply object.
    """
    text = label + "; ".join(facts)
    values: dict[str, Any] = {
        "relevant": bool(facts),
        "findings": text,
        "answer": text,
        "quotes": [f"{fact}." for fact in facts],
        "complete": "yes" if facts else "no",
        "confidence": "high",
        "count": len(facts),
        "items": facts,
        "counts": [],
        "question": text,
    }
    properties = schema.get("properties") or {}
    return {key: values.get(key, "") for key in properties}


class ChatServer:
    def __init__(
        self,
        window: int = 8192,
        rate_limit_first: int = 0,
        faults: Faults | None = None,
        delay: float = 0.0,
        label: str = "",
        facts: re.Pattern[str] = NEEDLE,
        tool_script: Callable[[list[dict[str, Any]]], list[dict[str, Any]] | str] | None = None,
        prompt_cache: bool = True,
        model: str | None = None,
        reject_response_format: bool = False,
        structured_reply: Callable[..., dict[str, Any] | str] | None = None,
        reasoning: str = "",
    ) -> None:
        self.window = window
        self.model = model
        """The one model this server serves, as a local server does (``None``: any name);
        a request for another gets the 404 ``model_not_found`` that OpenAI sends."""
        self.facts = facts
        """What counts as a fact: the replies list every match visible in the prompt."""
        self.prompt_cache = prompt_cache
        """Report repeated prompt prefixes as cached tokens (``False``: never)."""
        self.reject_response_format = reject_response_format
        """Refuse every ``response_format`` with a 400, as a server without structured replies does."""
        self.structured_reply = structured_reply or default_structured_reply
        """Builds a structured reply from (schema name, facts, schema, label): an object, or a raw string."""
        self.reasoning = reasoning
        """Written between ``<think>`` tags before every reply's content (``""``: none), as a reasoning
        model's server without a reasoning parser sends it (llama.cpp's ``--reasoning-format none``)."""
        self._prefixes: set[str] = set()
        self.label = label
        """Written before every fact reply, so tests can tell which server answered."""
        self.faults = faults or Faults(first=rate_limit_first, retry_after="0")
        self.delay = delay
        self.tool_script = tool_script
        """Answers requests that carry tools: given the messages, tool calls (name, arguments) or a text."""
        self.log: list[Request] = []
        self.usage: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._counter = TiktokenCounter(exact=True)
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def statuses(self) -> list[int]:
        return [int(r.outcome) for r in self.log if r.outcome.isdigit()]

    @property
    def requests(self) -> list[Request]:
        return list(self.log)

    def reads(self, outcome: str | None = None) -> list[tuple[int, int]]:
        """Spans of part-reading requests, optionally only those that ended with ``outcome``."""
        return [r.span for r in self.log if r.span and (outcome is None or r.outcome == outcome)]

    def start(self) -> ChatServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _prompt_tokens(self, messages: list[dict[str, Any]]) -> int:
        wrapped = [
            SystemMessage(_content_text(m.get("content")))
            if m["role"] == "system"
            else HumanMessage(_content_text(m.get("content")) + json.dumps(m.get("tool_calls") or ""))
            for m in messages
        ]
        return self._counter.count_messages(wrapped)

    def _cached_tokens(
        self, messages: list[dict[str, Any]], prompt_tokens: int, response_format: Any = None
    ) -> int:
        """Tokens of the longest cacheable prefix seen before; remembers this prompt's prefixes."""
        if not self.prompt_cache:
            return 0
        encoding = self._counter._encoding
        # The schema comes first, as OpenAI's service puts it before the messages.
        tokens: list[int] = encoding.encode_ordinary(json.dumps(response_format)) if response_format else []
        for message in messages:
            tokens += encoding.encode_ordinary(f"<|{message['role']}|>\n{_content_text(message['content'])}\n")
        digest = hashlib.sha256()
        prefixes: list[tuple[int, str]] = []
        done = 0
        for end in range(PROMPT_CACHE_MIN, len(tokens) + 1, PROMPT_CACHE_STEP):
            digest.update(json.dumps(tokens[done:end]).encode())
            done = end
            prefixes.append((end, digest.copy().hexdigest()))
        with self._lock:
            cached = 0
            for end, prefix in prefixes:
                if prefix not in self._prefixes:
                    break
                cached = end
            self._prefixes.update(prefix for _, prefix in prefixes)
        return min(cached, prompt_tokens)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                return

            def _client_gone(self, seconds: float) -> bool:
                """Wait up to ``seconds``; True as soon as the client closes the connection."""
                deadline = time.monotonic() + seconds
                while (left := deadline - time.monotonic()) > 0:
                    readable, _, _ = select.select([self.connection], [], [], min(left, 0.05))
                    if readable:
                        try:
                            if not self.connection.recv(1, socket.MSG_PEEK):
                                return True
                        except OSError:
                            return True
                return False

            def _finish(self, record: Request, outcome: str) -> None:
                with server._lock:
                    record.outcome = outcome
                    record.finished = time.monotonic()

            def _send(self, record: Request, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                # Logged before the body leaves: a client that has its reply may end the test (and
                # the server) before this thread would get to log it afterwards.
                self._finish(record, str(status))
                self.wfile.write(body)

            def _error(self, record: Request, status: int, message: str, code: str, headers=None) -> None:
                body = json.dumps({"error": {"message": message, "type": code, "code": code}}).encode()
                self._send(record, status, body, headers)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = "\n".join(_content_text(m.get("content")) for m in body["messages"])
                part = _PART.search(prompt)
                kind = "read" if part else ("synthesis" if '<finding id="' in prompt else "direct")
                if "<follow_up>" in prompt:
                    kind = "rewrite"  # the chat node's follow-up rewrite (create_document_node)
                with server._lock:
                    record = Request(
                        number=len(server.log) + 1,
                        started=time.monotonic(),
                        kind=kind,
                        span=(int(part.group(1)), int(part.group(2))) if part else None,
                        prompt_hash=hashlib.sha256(prompt.encode()).hexdigest()[:16],
                        cache_markers=sum(_markers(m["content"]) for m in body["messages"]),
                    )
                    server.log.append(record)
                    record.response_format = body.get("response_format")
                    record.max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
                    fault = server.faults.pick(record.number, prompt)
                if server.delay and self._client_gone(server.delay):
                    record.client_closed = True
                    self._finish(record, "client-closed")
                    return
                if fault is not None:
                    self._fault(record, fault)
                    return
                if server.model is not None and body.get("model") != server.model:
                    message = f"The model `{body.get('model')}` does not exist; this server serves `{server.model}`."
                    self._error(record, 404, message, "model_not_found")
                    return
                prompt_tokens = server._prompt_tokens(body["messages"])
                if body.get("response_format"):
                    # Billed with the prompt, as OpenAI's service counts a schema.
                    prompt_tokens += server._counter.count(json.dumps(body["response_format"]))
                if prompt_tokens > server.window:
                    message = (
                        f"This model's maximum context length is {server.window} tokens. However, your messages "
                        f"resulted in {prompt_tokens} tokens."
                    )
                    self._error(record, 400, message, "context_length_exceeded")
                    return
                if body.get("response_format") and server.reject_response_format:
                    message = "response_format is not supported by this server"
                    self._error(record, 400, message, "invalid_request_error")
                    return
                if body.get("tools") and server.tool_script is not None:
                    self._tool_reply(record, body, prompt_tokens)
                    return
                facts = sorted(set(server.facts.findall(prompt)))
                reply = server.label + "; ".join(facts) if facts else NO_RELEVANT_INFORMATION
                if (response_format := body.get("response_format")) and response_format.get("type") == "json_schema":
                    spec = response_format["json_schema"]
                    built = server.structured_reply(
                        spec.get("name", ""), facts, spec.get("schema") or {}, server.label
                    )
                    reply = built if isinstance(built, str) else json.dumps(built)
                if server.reasoning:
                    reply = f"<think>\n{server.reasoning}\n</think>\n\n{reply}"
                completion_tokens = server._counter.count(reply)
                usage = {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                    "prompt_tokens_details": {
                        "cached_tokens": server._cached_tokens(
                            body["messages"], prompt_tokens, body.get("response_format")
                        )
                    },
                }
                with server._lock:
                    server.usage.append(usage)
                    record.usage = usage
                if body.get("stream"):
                    self._stream(record, body["model"], reply, usage)
                    return
                completion = {
                    "id": f"chatcmpl-{record.number}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body["model"],
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
                    ],
                    "usage": usage,
                }
                self._send(record, 200, json.dumps(completion).encode())

            def _tool_reply(self, record: Request, body: dict[str, Any], prompt_tokens: int) -> None:
                scripted = server.tool_script(body["messages"])  # type: ignore[misc]
                message: dict[str, Any] = {"role": "assistant", "content": None}
                if isinstance(scripted, str):
                    message["content"] = scripted
                else:
                    message["tool_calls"] = [
                        {
                            "id": f"call_{record.number}_{index}",
                            "type": "function",
                            "function": {"name": item["name"], "arguments": json.dumps(item["args"])},
                        }
                        for index, item in enumerate(scripted)
                    ]
                usage = {"prompt_tokens": prompt_tokens, "completion_tokens": 20, "total_tokens": prompt_tokens + 20}
                completion = {
                    "id": f"chatcmpl-{record.number}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "finish_reason": "stop" if isinstance(scripted, str) else "tool_calls",
                        }
                    ],
                    "usage": usage,
                }
                self._send(record, 200, json.dumps(completion).encode())

            def _fault(self, record: Request, fault: str) -> None:
                if fault == "429":
                    headers = {"Retry-After": server.faults.retry_after} if server.faults.retry_after else {}
                    self._error(record, 429, "Rate limit reached", "rate_limit_exceeded", headers)
                elif fault == "context":
                    self._error(record, 400, "maximum context length exceeded", "context_length_exceeded")
                elif fault in {"500", "503"}:
                    self._error(record, int(fault), "The server had an error", "server_error")
                elif fault == "hang":
                    record.client_closed = self._client_gone(server.faults.hang_seconds)
                    self._finish(record, "hang")
                    self.close_connection = True
                elif fault == "drop":
                    self._finish(record, "drop")
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                elif fault == "malformed":
                    self._send(record, 200, b'{"id": "chatcmpl-x", "choices": [{"index": 0, "mess')
                    self._finish(record, "malformed")
                else:  # pragma: no cover - test bug
                    raise ValueError(fault)

            def _stream(self, record: Request, model: str, reply: str, usage: dict[str, int]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                base = {
                    "id": "chatcmpl-s",
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": model,
                }
                for index, word in enumerate(reply.split(" ")):
                    piece = word if index == 0 else " " + word
                    # The first delta names the role, as OpenAI's does (the SDK's stream helper needs it).
                    delta = {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
                    chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                final = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                self.wfile.write(f"data: {json.dumps(final)}\n\n".encode())
                self.wfile.write(f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self._finish(record, "200")

        return Handler

"""A local OpenAI-compatible chat server for integration tests (127.0.0.1 only).

It answers like the perfect reader (the NEEDLE facts visible in the prompt),
reports ``usage``, streams when asked, refuses prompts over its window with the
400 ``context_length_exceeded`` that OpenAI sends, and can answer the first N
requests with 429 + ``Retry-After``. It records every request.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage

from rlm_graph.prompts import NO_RELEVANT_INFORMATION
from rlm_graph.tokens import TiktokenCounter
from tests.fakes import NEEDLE


class ChatServer:
    def __init__(self, window: int = 8192, rate_limit_first: int = 0) -> None:
        self.window = window
        self.rate_limit_first = rate_limit_first
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.usage: list[dict[str, int]] = []
        self._lock = threading.Lock()
        self._counter = TiktokenCounter(exact=True)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> ChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _prompt_tokens(self, messages: list[dict[str, Any]]) -> int:
        wrapped = [
            SystemMessage(m["content"]) if m["role"] == "system" else HumanMessage(m["content"]) for m in messages
        ]
        return self._counter.count_messages(wrapped)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                return

            def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
                with server._lock:
                    server.statuses.append(status)

            def do_POST(self) -> None:
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": "not found"}})
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append(body)
                    number = len(server.requests)
                if number <= server.rate_limit_first:
                    error = {
                        "error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}
                    }
                    self._send(429, error, {"Retry-After": "0"})
                    return
                prompt_tokens = server._prompt_tokens(body["messages"])
                if prompt_tokens > server.window:
                    message = (
                        f"This model's maximum context length is {server.window} tokens. However, your messages "
                        f"resulted in {prompt_tokens} tokens."
                    )
                    error = {
                        "message": message,
                        "type": "invalid_request_error",
                        "param": "messages",
                        "code": "context_length_exceeded",
                    }
                    self._send(400, {"error": error})
                    return
                prompt = "\n".join(m["content"] for m in body["messages"])
                facts = sorted(set(NEEDLE.findall(prompt)))
                reply = "; ".join(facts) if facts else NO_RELEVANT_INFORMATION
                completion_tokens = server._counter.count(reply)
                usage = {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                }
                with server._lock:
                    server.usage.append(usage)
                if body.get("stream"):
                    self._stream(body["model"], reply, usage)
                    return
                self._send(
                    200,
                    {
                        "id": f"chatcmpl-{number}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body["model"],
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
                        ],
                        "usage": usage,
                    },
                )

            def _stream(self, model: str, reply: str, usage: dict[str, int]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                base = {
                    "id": "chatcmpl-s",
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": model,
                }
                words = reply.split(" ")
                for index, word in enumerate(words):
                    piece = word if index == 0 else " " + word
                    chunk = {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                final = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                self.wfile.write(f"data: {json.dumps(final)}\n\n".encode())
                self.wfile.write(f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                with server._lock:
                    server.statuses.append(200)

        return Handler

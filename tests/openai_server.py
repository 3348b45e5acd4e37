"""A real local HTTP server speaking the OpenAI chat-completions API, for the proposer tests.

It answers POST /v1/chat/completions from a script: each request pops the next action
(a status code with headers, a delay, a completion with or without logprobs, a cap on `n`);
with the script empty it answers with the default completion. Every request body is recorded,
so tests can check what the client sent.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def tokens_of(text: str, size: int = 4) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


@dataclass
class Action:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    content: str | None = None  # None: the server's default completion
    logprobs: bool = True  # include logprobs when the client asks for them
    max_n: int | None = None  # answer with at most this many choices
    reject_logprobs: bool = False  # 400 if the request asks for logprobs


class FakeOpenAI:
    def __init__(self, default_content: str) -> None:
        self.default_content = default_content
        self.script: list[Action] = []
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def next_action(self, body: dict[str, Any]) -> Action:
        with self.lock:
            self.requests.append(body)
            return self.script.pop(0) if self.script else Action()

    def completion(self, body: dict[str, Any], action: Action) -> dict[str, Any]:
        content = action.content if action.content is not None else self.default_content
        n = int(body.get("n", 1))
        if action.max_n is not None:
            n = min(n, action.max_n)
        choices = []
        for i in range(n):
            text = content if i == 0 else content + f"\n# sample {i}\n"
            choice: dict[str, Any] = {"index": i, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": text}}
            if body.get("logprobs") and action.logprobs:
                toks = tokens_of(text)
                choice["logprobs"] = {"content": [
                    {"token": t, "logprob": -0.05 * (1 + (j % 7)), "bytes": list(t.encode()),
                     "top_logprobs": []} for j, t in enumerate(toks)]}
            else:
                choice["logprobs"] = None
            choices.append(choice)
        prompt = sum(len(m.get("content", "")) for m in body.get("messages", [])) // 4
        done = sum(len(c["message"]["content"]) for c in choices) // 4
        return {"id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion",
                "created": int(time.time()), "model": body.get("model", "test"),
                "choices": choices,
                "usage": {"prompt_tokens": prompt, "completion_tokens": done,
                          "total_tokens": prompt + done}}


def _handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def _send(self, status: int, payload: dict[str, Any],
                  headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data)  # fails when the client timed out first

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            if not self.path.endswith("/chat/completions"):
                self._send(404, {"error": {"message": "not found"}})
                return
            action = fake.next_action(body)
            if action.delay_s:
                time.sleep(action.delay_s)
            if action.reject_logprobs and body.get("logprobs"):
                self._send(400, {"error": {"message": "logprobs are not supported",
                                           "type": "invalid_request_error"}})
                return
            if action.status != 200:
                self._send(action.status, {"error": {"message": f"scripted {action.status}",
                                                     "type": "server_error"}}, action.headers)
                return
            self._send(200, fake.completion(body, action))

    return Handler


@contextmanager
def serve(default_content: str) -> Iterator[tuple[FakeOpenAI, str]]:
    """(the fake, its base URL) for the duration of the block."""
    fake = FakeOpenAI(default_content)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()

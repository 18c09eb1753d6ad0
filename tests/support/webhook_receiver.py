"""A webhook receiver on 127.0.0.1 (a free port), written the way an application would write one:
it verifies every request with the official SDK's ``client.webhooks.unwrap`` and applies each event
once, deduplicating by ``webhook-id``. ``fail_first`` answers 500 to that many verified requests
(after recording them: an application that processed the event and crashed before answering)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai


@dataclass
class Receiver:
    sdk: openai.OpenAI
    fail_first: int = 0
    secret: str = ""  # set once the endpoint is created (the secret is shown then)
    url: str = ""
    requests: list[tuple[str, Any]] = field(default_factory=list)  # (webhook-id, unwrapped event)
    applied: dict[str, Any] = field(default_factory=dict)  # what the application saw, by webhook-id
    rejected: list[str] = field(default_factory=list)  # why a request failed verification
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, body: bytes, headers: dict[str, str]) -> int:
        try:
            event = self.sdk.webhooks.unwrap(body, headers, secret=self.secret)
        except (openai.InvalidWebhookSignatureError, ValueError) as exc:
            with self.lock:
                self.rejected.append(str(exc))
            return 400
        webhook_id = headers["webhook-id"]
        with self.lock:
            self.requests.append((webhook_id, event))
            self.applied.setdefault(webhook_id, event)
            return 500 if len(self.requests) <= self.fail_first else 200


@contextmanager
def receiving(sdk: openai.OpenAI, fail_first: int = 0) -> Iterator[Receiver]:
    """A running receiver; stopped on exit."""
    receiver = Receiver(sdk, fail_first)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's naming
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            code = receiver.handle(body, {k.lower(): v for k, v in self.headers.items()})
            self.send_response(code)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)

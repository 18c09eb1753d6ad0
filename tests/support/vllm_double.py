"""A test double of vLLM 0.11.0's OpenAI server, for the contract of its run-time LoRA endpoints.

vLLM cannot run on the test machines, so this double answers as vLLM 0.11.0 does (read from its
source: ``vllm/entrypoints/openai/api_server.py`` and ``serving_models.py``, with
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``):

- ``POST /v1/load_lora_adapter`` ``{"lora_name", "lora_path"}``: 200 with the plain-text body
  ``Success: LoRA adapter '<name>' added successfully.``; a missing field, or a name already
  loaded, 400 ``InvalidUserInput``; files the engine cannot find 404 ``NotFoundError`` (the
  worker's "Loading lora <name> failed: No adapter found for <path>"). The engine reads the
  files at this moment, so the double checks ``adapter_config.json`` at ``lora_path`` too.
- ``POST /v1/unload_lora_adapter`` ``{"lora_name"}``: 200 ``Success: LoRA adapter '<name>'
  removed successfully.``; an unknown name 404 ``NotFoundError``, no name 400.
- Errors are ``{"error": {"message", "type", "param", "code"}}`` (``ErrorResponse`` wrapping
  ``ErrorInfo``, vLLM's envelope since 0.10.2) with ``code`` the HTTP status.
- ``GET /v1/models``: the base card (``root`` its path, ``parent`` null) and one card per
  adapter (``root`` its path, ``parent`` the base).
- ``POST /v1/chat/completions`` on the base or a loaded adapter (else 404 "The model `<m>` does
  not exist."): a fixed reply naming the model, with usage; streamed as SSE chunks, the first
  carrying usage when ``stream_options.continuous_usage_stats`` is set, a usage-only chunk last.

Every request is recorded in ``requests`` as ``(path, json body)``, its Authorization header in
``authorizations``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BASE = "base-model"


class VLLMDouble:
    def __init__(self, base: str = BASE, base_path: str = "/models/base-model") -> None:
        self.base = base
        self.base_path = base_path
        self.loras: dict[str, str] = {}  # name -> path, in load order
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.authorizations: set[str | None] = set()  # the Authorization headers seen
        self.load_gate: threading.Event | None = None  # set: loads wait for it (a slow load)
        self.loads_waiting = 0
        self.broken_unloads = False  # True: unloads fail with 500, as later vLLM versions can
        self.lock = threading.Lock()
        self.url = ""

    # --- what tests look at ----------------------------------------------------------------

    def calls(self, path: str) -> list[dict[str, Any]]:
        return [body for p, body in self.requests if p == path]

    def restart(self) -> None:
        """Forget every adapter, as a restarted vLLM server does."""
        with self.lock:
            self.loras.clear()

    # --- the endpoints ---------------------------------------------------------------------

    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        with self.lock:
            self.requests.append((path, body))
            if method == "GET" and path == "/v1/models":
                return 200, self._models()
            if method == "POST" and path == "/v1/load_lora_adapter":
                return self._load(body)
            if method == "POST" and path == "/v1/unload_lora_adapter":
                return self._unload(body)
            if method == "POST" and path == "/v1/chat/completions":
                model = body.get("model")
                if model != self.base and model not in self.loras:
                    return _error(f"The model `{model}` does not exist.", "NotFoundError", 404, param="model")
                return 200, None  # the handler writes the completion
            return 404, {"detail": "Not Found"}  # FastAPI's answer for an unknown route

    def _models(self) -> dict[str, Any]:
        cards = [{"id": self.base, "object": "model", "root": self.base_path, "parent": None}]
        cards += [
            {"id": name, "object": "model", "root": path, "parent": self.base}
            for name, path in self.loras.items()
        ]
        return {"object": "list", "data": cards}

    def _load(self, body: dict[str, Any]) -> tuple[int, Any]:
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            return _error("Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput", 400)
        if name in self.loras:
            return _error(f"The lora adapter '{name}' has already been loaded.", "InvalidUserInput", 400)
        if not (Path(path) / "adapter_config.json").is_file():
            message = f"Loading lora {name} failed: No adapter found for {path}"
            return _error(message, "NotFoundError", 404)
        self.loras[name] = path
        return 200, f"Success: LoRA adapter '{name}' added successfully."

    def _unload(self, body: dict[str, Any]) -> tuple[int, Any]:
        name = body.get("lora_name")
        if self.broken_unloads:
            return _error(
                f"Failed to remove lora adapter '{name}' from the engine.", "InternalServerError", 500
            )
        if not name:
            return _error(
                "'lora_name' needs to be provided to unload a LoRA adapter.", "InvalidUserInput", 400
            )
        if name not in self.loras:
            return _error(f"The lora adapter '{name}' cannot be found.", "NotFoundError", 404)
        del self.loras[name]
        return 200, f"Success: LoRA adapter '{name}' removed successfully."


def _error(message: str, kind: str, code: int, param: str | None = None) -> tuple[int, Any]:
    return code, {"error": {"message": message, "type": kind, "param": param, "code": code}}


PROMPT_TOKENS = 9


def _reply(model: str) -> list[str]:
    return ["Hello", " from", f" {model}"]


def _handler(double: VLLMDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            return

        def do_GET(self) -> None:
            self._answer("GET", {})

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b"{}"
            self._answer("POST", json.loads(raw or b"{}"))

        def _answer(self, method: str, body: dict[str, Any]) -> None:
            double.authorizations.add(self.headers.get("authorization"))
            if self.path == "/v1/load_lora_adapter" and double.load_gate is not None:
                double.loads_waiting += 1
                double.load_gate.wait(30)
            status, payload = double.handle(method, self.path, body)
            if status == 200 and payload is None:
                self._complete(body)
            elif isinstance(payload, str):  # vLLM's Response(content=str): plain text
                self._send(status, payload.encode(), "text/plain; charset=utf-8")
            else:
                self._send(status, json.dumps(payload).encode(), "application/json")

        def _send(self, status: int, data: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _complete(self, body: dict[str, Any]) -> None:
            model = str(body["model"])
            pieces = _reply(model)
            usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": len(pieces)}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            if not body.get("stream"):
                message = {"role": "assistant", "content": "".join(pieces)}
                choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
                reply = {"id": "chatcmpl-1", "object": "chat.completion", "model": model, "choices": [choice]}
                self._send(200, json.dumps({**reply, "usage": usage}).encode(), "application/json")
                return
            continuous = bool((body.get("stream_options") or {}).get("continuous_usage_stats"))
            chunks: list[dict[str, Any]] = [
                {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
            ]
            chunks += [{"choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces]
            chunks[-1]["choices"][0]["finish_reason"] = "stop"
            if continuous:
                chunks[0]["usage"] = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": 0}
            chunks.append({"choices": [], "usage": usage})
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            for chunk in chunks:
                data = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model, **chunk}
                self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.close_connection = True

    return Handler


@contextmanager
def vllm_double(**kwargs: Any) -> Iterator[VLLMDouble]:
    """A running double on a free loopback port (``double.url``)."""
    double = VLLMDouble(**kwargs)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(double))
    server.daemon_threads = True
    double.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="vllm-double", daemon=True)
    thread.start()
    try:
        yield double
    finally:
        server.shutdown()
        server.server_close()

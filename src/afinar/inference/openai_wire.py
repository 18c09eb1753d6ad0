"""The OpenAI chat protocol as an inference server speaks it, for :mod:`afinar.inference.openai_http`.

Three parts: the server's failures as Afinar errors (its OpenAI envelope); :class:`Transport`,
the address, key and HTTP clients of one server; and the translation of a
:class:`~afinar.inference.types.GenerationRequest` into a chat completion request body, and of the
server's answer (JSON, or server-sent events) back into results and events. The server reports
only the sum of the completion tokens of all choices; it is split over the choices in proportion
to what each received, so metering (which uses the sum) stays exact.
"""

from __future__ import annotations

import asyncio
import json
import threading
import weakref
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from afinar.errors import AfinarError, InvalidRequest, RateLimited, ServerError
from afinar.inference.types import (
    Choice,
    Delta,
    Finished,
    GenerationRequest,
    GenerationResult,
    TokenLogprob,
    TopLogprob,
)

CHAT = "/v1/chat/completions"
LOAD = "/v1/load_lora_adapter"
UNLOAD = "/v1/unload_lora_adapter"
MODELS = "/v1/models"


# --- errors -----------------------------------------------------------------------------------


class ModelGone(ServerError):
    """The server answered 404 for the model: an adapter it no longer knows (reload and retry)."""


def error_parts(body: str) -> tuple[str, str | None, str]:
    """(message, param, type) from an error body: OpenAI's nested envelope (vLLM since 0.10.2,
    llama.cpp), vLLM's older flat one, or plain text."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:500] or "no details", None, ""
    if isinstance(data, dict):
        inner = data.get("error", data)
        if isinstance(inner, dict):
            return str(inner.get("message") or body[:500]), inner.get("param"), str(inner.get("type") or "")
        if isinstance(inner, str):
            return inner, None, ""
    return body.strip()[:500], None, ""


def error_for(status: int, body: str, headers: Mapping[str, str] | None = None) -> AfinarError:
    """The Afinar error for a failed answer of the inference server (``status``, ``body``)."""
    message, param, kind = error_parts(body)
    if status in (400, 413, 422):
        lowered = message.lower()
        if "context length" in lowered or "context size" in lowered or kind == "exceed_context_size_error":
            return InvalidRequest(message, param="messages", code="context_length_exceeded")
        return InvalidRequest(message, param=param if isinstance(param, str) else None)
    if status == 429:
        retry = (headers or {}).get("retry-after", "")
        return RateLimited(
            "The inference server is busy; please retry shortly.",
            retry_after=float(retry) if retry.replace(".", "", 1).isdigit() else 1.0,
        )
    if status == 404:
        return ModelGone(f"The inference server does not know the model: {message}")
    if status in (401, 403):
        return ServerError("The inference server refused Afinar's credentials (check AFINAR_VLLM_API_KEY).")
    return ServerError(f"The inference server failed ({status}): {message}")


def unreachable(url: str, exc: Exception) -> ServerError:
    return ServerError(f"The inference server at {url} cannot be reached: {exc.__class__.__name__}")


# --- the HTTP side ----------------------------------------------------------------------------


class Transport:
    """The server's address and key, and HTTP clients for it: one blocking client (adapter
    management, ``generate_sync``) and one asynchronous client per event loop."""

    def __init__(self, url: str, *, api_key: str = "", timeout: float = 600.0) -> None:
        self.url = url.rstrip("/")
        if self.url.endswith("/v1"):  # accept the OpenAI-style base URL too
            self.url = self.url[: -len("/v1")]
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = httpx.Timeout(timeout, connect=10.0)
        self.sync = httpx.Client(base_url=self.url, headers=self.headers, timeout=self.timeout)
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.get(loop)
            if client is None:
                client = httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=self.timeout)
                self._clients[loop] = client
            return client

    def post(self, path: str, body: dict[str, Any], timeout: float | None = None) -> httpx.Response:
        try:
            return self.sync.post(path, json=body, timeout=timeout or self.timeout)
        except httpx.HTTPError as exc:
            raise unreachable(self.url, exc) from exc

    def get(self, path: str) -> httpx.Response:
        try:
            return self.sync.get(path)
        except httpx.HTTPError as exc:
            raise unreachable(self.url, exc) from exc

    def close(self) -> None:
        self.sync.close()


# --- requests and replies ---------------------------------------------------------------------


def request_body(
    request: GenerationRequest, model: str, *, stream: bool, llamacpp: bool = False
) -> dict[str, Any]:
    """The chat completion request for the server (OpenAI's fields, plus vLLM's where needed;
    ``llamacpp``: llama.cpp's ``timings_per_token``, its way to count the prompt up front)."""
    p = request.params
    messages = [dict(m) for m in request.messages]
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "temperature": p.temperature,
        "top_p": p.top_p,
        "n": p.n,
    }
    if p.max_tokens is not None:
        body["max_tokens"] = p.max_tokens
    if p.stop and request.constraint is None:  # stop strings do not apply under a grammar
        body["stop"] = list(p.stop)
    if p.seed is not None:
        body["seed"] = p.seed
    if p.presence_penalty:
        body["presence_penalty"] = p.presence_penalty
    if p.frequency_penalty:
        body["frequency_penalty"] = p.frequency_penalty
    if p.logit_bias:
        body["logit_bias"] = {str(k): v for k, v in p.logit_bias.items()}
    if p.logprobs:
        body["logprobs"] = True
        body["top_logprobs"] = p.top_logprobs
    if request.tools:
        body["tools"] = request.tools
        body["tool_choice"] = "none"  # rendered by the template; the reply is parsed by Afinar
    constraint = request.constraint
    if constraint is not None and constraint.json_schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {
                "name": "reply",
                "schema": constraint.json_schema,
                "strict": not constraint.lenient,
            },
        }
    elif constraint is not None and constraint.lark is not None:
        body["structured_outputs"] = {"grammar": constraint.lark}
    elif request.response_prefix:  # continue a prefilled reply (vLLM; llama.cpp does so by itself)
        messages.append({"role": "assistant", "content": request.response_prefix})
        body["continue_final_message"] = True
        body["add_generation_prompt"] = False
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}
        if llamacpp:
            body["timings_per_token"] = True
    return body


def prefix_reported(request: GenerationRequest) -> str:
    """The forced opening the server continued (reported as output); none under a grammar."""
    return request.response_prefix if request.constraint is None else ""


def _logprobs(data: Any) -> list[TokenLogprob] | None:
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        return None
    out = []
    for item in data["content"]:
        tops = [
            TopLogprob(str(t.get("token", "")), float(t.get("logprob", 0.0)), t.get("bytes"))
            for t in item.get("top_logprobs") or []
        ]
        out.append(
            TokenLogprob(str(item.get("token", "")), float(item.get("logprob", 0.0)), item.get("bytes"), tops)
        )
    return out


def _finish(reason: Any) -> str:
    return "length" if reason == "length" else "stop"


def apportion(total: int, weights: list[int], full: list[bool], max_tokens: int | None) -> list[int]:
    """Split the server's completion tokens over the choices (it reports only their sum).

    A choice cut by ``max_tokens`` (``full``) used exactly that many; the rest is shared in
    proportion to ``weights`` (tokens seen in logprobs, else chunks or characters). The parts
    always add up to ``total`` (or to what the cut choices alone must have used, when a server
    reports less: llama.cpp counts only the first of ``n`` choices), so metering stays exact.
    """
    if len(weights) <= 1:
        return [total] * len(weights)
    known = sum(max_tokens if is_full and max_tokens is not None else 0 for is_full in full)
    total = max(total, known)  # a server that counts only the first choice (llama.cpp's, n > 1)
    parts = [0] * len(weights)
    left = total
    if max_tokens is not None:
        for i, is_full in enumerate(full):
            if is_full:
                parts[i] = min(max_tokens, left)
                left -= parts[i]
    rest = [i for i, is_full in enumerate(full) if not (is_full and max_tokens is not None)]
    if not rest:
        parts[-1] += left
        return parts
    whole = sum(weights[i] for i in rest)
    for i in rest:
        parts[i] = left * weights[i] // whole if whole > 0 else left // len(rest)
    parts[rest[-1]] += left - sum(parts[i] for i in rest)
    return parts


def parse_result(data: dict[str, Any], request: GenerationRequest) -> GenerationResult:
    """A non-streaming answer of the server as a :class:`GenerationResult`."""
    usage = data.get("usage") or {}
    prefix = prefix_reported(request)
    choices = [Choice(index=i) for i in range(request.params.n)]
    counted: list[int] = [0] * len(choices)
    for c in data.get("choices") or []:
        i = int(c.get("index", 0))
        if not 0 <= i < len(choices):
            continue
        message = c.get("message") or {}
        choices[i].text = prefix + str(message.get("content") or "") + _tool_calls_text(message)
        choices[i].finish_reason = _finish(c.get("finish_reason"))
        lp = _logprobs(c.get("logprobs"))
        choices[i].logprobs = lp if request.params.logprobs else None
        counted[i] = len(lp) if lp is not None else max(1, len(choices[i].text))
    full = [c.finish_reason == "length" for c in choices]
    total = int(usage.get("completion_tokens") or 0)
    for choice, tokens in zip(
        choices, apportion(total, counted, full, request.params.max_tokens), strict=True
    ):
        choice.completion_tokens = tokens
    return GenerationResult(prompt_tokens=int(usage.get("prompt_tokens") or 0), choices=choices)


def _tool_calls_text(message: Mapping[str, Any]) -> str:
    """Tool calls a server parsed anyway (its own parser on), written back as the Hermes-style
    text Afinar's templates produce, so that Afinar parses them like any other reply."""
    out = ""
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        try:
            arguments = json.loads(fn.get("arguments") or "{}")
        except ValueError:
            arguments = fn.get("arguments")
        payload = json.dumps({"name": fn.get("name"), "arguments": arguments})
        out += f"<tool_call>\n{payload}\n</tool_call>"
    return out


@dataclass
class StreamState:
    """What a streaming answer has said so far."""

    n: int
    max_tokens: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int = 0
    usage_seen: bool = False

    def __post_init__(self) -> None:
        self.reasons: list[str | None] = [None] * self.n
        self.chunks: list[int] = [0] * self.n

    def read_usage(self, chunk: Mapping[str, Any]) -> None:
        timings = chunk.get("timings")  # llama.cpp's, with timings_per_token: cached + evaluated
        if self.prompt_tokens is None and isinstance(timings, dict) and "prompt_n" in timings:
            self.prompt_tokens = int(timings.get("cache_n") or 0) + int(timings["prompt_n"])
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            if self.prompt_tokens is None and usage.get("prompt_tokens") is not None:
                self.prompt_tokens = int(usage["prompt_tokens"])
            if not chunk.get("choices"):  # the final usage-only chunk: the exact totals
                self.completion_tokens = int(usage.get("completion_tokens") or 0)
                self.usage_seen = True

    def deltas(self, chunk: Mapping[str, Any], want_logprobs: bool) -> list[Delta]:
        out = []
        for c in chunk.get("choices") or []:
            i = int(c.get("index", 0))
            if not 0 <= i < self.n:
                continue
            delta = c.get("delta") or {}
            text = str(delta.get("content") or "")
            lp = _logprobs(c.get("logprobs"))
            if text or lp:
                self.chunks[i] += len(lp) if lp is not None else 1
                out.append(Delta(i, text, lp if want_logprobs else None))
            if c.get("finish_reason") is not None:
                self.reasons[i] = _finish(c.get("finish_reason"))
        return out

    def finished(self) -> list[Finished]:
        full = [reason == "length" for reason in self.reasons]
        tokens = apportion(self.completion_tokens, self.chunks, full, self.max_tokens)
        return [Finished(i, self.reasons[i] or "stop", tokens[i]) for i in range(self.n)]


async def server_sent_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The JSON payloads of a server-sent event stream, until ``[DONE]``."""
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        if payload:
            data = json.loads(payload)
            if isinstance(data, dict) and "error" in data and not data.get("choices"):
                raise ServerError(f"The inference server failed mid-stream: {error_parts(payload)[0]}")
            yield data

"""Serving through an external OpenAI-compatible server: vLLM with run-time LoRA loading.

:class:`OpenAIHTTPEngine` implements :class:`~afinar.inference.protocol.InferenceEngine` as a
client of ``POST /v1/chat/completions`` (JSON, or SSE with ``stream: true``). The server renders
the chat template, decodes, and counts tokens; Afinar keeps everything around it (resolution,
moderation, metering, tool-call parsing), exactly as with the built-in engine. It is written for
``vllm serve <base> --enable-lora`` with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` (the contract
test pins vLLM 0.11.0) and is exercised in ``make test`` against llama.cpp's server, which speaks
the same chat protocol (docs/serving.md).

- **Bases** are addressed by the server's served model name: ``vllm_served_models`` maps a base
  directory's name (or path) to it; otherwise the server's ``GET /v1/models`` is asked for a base
  of the same name, and a server with a single base serves every request.
- **Adapters** are registered at run time with ``POST /v1/load_lora_adapter`` under a name
  derived from the adapter's path, used as the request's ``model``, and removed with ``POST
  /v1/unload_lora_adapter``: least recently used first beyond ``adapter_cache_size``, and when
  the model is deleted. An adapter in use by a running request is never unloaded under it. The
  server reads the files itself, so they must be readable there: plaintext adapters on a shared
  file system are passed by path; adapters encrypted at rest are written, decrypted, into
  ``vllm_adapter_dir`` (a directory the vLLM node mounts, at ``vllm_adapter_dir_remote``) for as
  long as they are loaded, because vLLM may re-read them whenever its own cache evicts them.
  An adapter the server forgot (another Afinar node unloaded it, the server restarted) is loaded
  again and the request retried once. Full fine-tunes are refused (400): vLLM loads adapters only.
- **Sampling** fields are passed through. Tools are sent with ``tool_choice: "none"``, so the
  template shows them and the reply comes back as text that Afinar parses, as it does for the
  built-in engine; a constraint becomes ``response_format`` (JSON Schema) or vLLM's
  ``structured_outputs.grammar`` (Lark, read by its ``guidance`` backend); a forced reply
  opening is then dropped, the grammar forces it. Usage comes from the server: with
  ``stream_options.continuous_usage_stats`` (vLLM) the prompt's token count arrives with the first
  chunk; llama.cpp's server, which lacks it, is asked for ``timings_per_token`` instead (its
  prompt count, cached plus evaluated); a server with neither has its chunks held until the
  final usage chunk.
- **Errors** of the server become Afinar's errors (its OpenAI envelope): 400 and 422 are the
  caller's (``context_length_exceeded`` kept), 429 a rate limit, anything else (and an
  unreachable server) a server error.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from afinar.errors import ServerError
from afinar.inference.openai_wire import (
    CHAT,
    MODELS,
    ModelGone,
    StreamState,
    Transport,
    error_for,
    parse_result,
    prefix_reported,
    request_body,
    server_sent_events,
    unreachable,
)
from afinar.inference.types import Delta, Event, GenerationRequest, GenerationResult, Started
from afinar.inference.vllm_adapters import AdapterPool, Opener

if TYPE_CHECKING:
    from afinar.inference.backends import EngineContext

log = logging.getLogger(__name__)


# --- the engine -------------------------------------------------------------------------------


class OpenAIHTTPEngine:
    """An :class:`~afinar.inference.protocol.InferenceEngine` served by an OpenAI-compatible server."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str = "",
        served_models: Mapping[str, str] | None = None,
        adapter_cache_size: int = 8,
        opener: Opener | None = None,
        adapter_dir: Path | None = None,
        adapter_dir_remote: str = "",
        timeout: float = 600.0,
    ) -> None:
        if not url:
            raise ServerError("The vllm backend needs AFINAR_VLLM_URL (the vLLM server's address).")
        self.transport = Transport(url, api_key=api_key, timeout=timeout)
        self.adapters = AdapterPool(
            self.transport,
            capacity=adapter_cache_size,
            opener=opener,
            shared_dir=adapter_dir,
            remote_dir=adapter_dir_remote,
        )
        self.served_models = dict(served_models or {})
        self._bases: list[dict[str, Any]] | None = None
        self.llamacpp = False  # the server is llama.cpp's (seen in its model listing)
        self._closed = False
        self._in_flight = 0
        self._count_lock = threading.Lock()

    # --- the protocol --------------------------------------------------------------------

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Event, None]:
        self._check_open()
        model, adapter = await self._model_for_async(request)
        try:
            for attempt in (1, 2):
                try:
                    async for event in self._stream_once(request, model):
                        yield event
                    return
                except ModelGone:
                    if adapter is None or attempt == 2:
                        raise
                    model, adapter = await asyncio.to_thread(self._reload, request, adapter)
        finally:
            if adapter is not None:
                await asyncio.to_thread(self.adapters.release, adapter)

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        self._check_open()
        model, adapter = await self._model_for_async(request)
        try:
            for attempt in (1, 2):
                try:
                    return await self._generate_once(request, model)
                except ModelGone:
                    if adapter is None or attempt == 2:
                        raise
                    model, adapter = await asyncio.to_thread(self._reload, request, adapter)
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            if adapter is not None:
                await asyncio.to_thread(self.adapters.release, adapter)

    def generate_sync(self, request: GenerationRequest, timeout: float | None = None) -> GenerationResult:
        self._check_open()
        model, adapter = self._model_for(request)
        try:
            for attempt in (1, 2):
                try:
                    with self._counting():
                        response = self.transport.post(
                            CHAT, request_body(request, model, stream=False), timeout
                        )
                    if response.status_code != 200:
                        raise error_for(response.status_code, response.text, response.headers)
                    return parse_result(response.json(), request)
                except ModelGone:
                    if adapter is None or attempt == 2:
                        raise
                    model, adapter = self._reload(request, adapter)
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            if adapter is not None:
                self.adapters.release(adapter)

    def unload(self, adapter_path: Path) -> bool:
        return self.adapters.unload(Path(adapter_path))

    def loaded_adapters(self) -> list[Path]:
        return self.adapters.loaded()

    def queued(self) -> int:
        """Requests sent and not yet answered (the server queues them, not Afinar)."""
        with self._count_lock:
            return self._in_flight

    def close(self) -> None:
        """Refuse new requests, unload our adapters (and remove their plaintext copies)."""
        if self._closed:
            return
        self._closed = True
        self.adapters.unload_all()
        self.transport.close()

    # --- internals -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ServerError("The inference engine is shutting down.")

    def _counting(self) -> _InFlight:
        return _InFlight(self)

    async def _model_for_async(self, request: GenerationRequest) -> tuple[str, str | None]:
        """``_model_for`` in a thread; if the caller is cancelled meanwhile, the pin the thread
        still takes is released when it does (else the adapter could never be unloaded)."""
        task = asyncio.ensure_future(asyncio.to_thread(self._model_for, request))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(self._release_abandoned)
            raise

    def _release_abandoned(self, task: asyncio.Future[tuple[str, str | None]]) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        adapter = task.result()[1]
        if adapter is not None:
            task.get_loop().run_in_executor(None, self.adapters.release, adapter)

    def _model_for(self, request: GenerationRequest) -> tuple[str, str | None]:
        """The served name to send as ``model``, and the adapter name pinned for the request."""
        if request.adapter_path is None:
            return self.served_name(request.base_path), None
        self.served_name(request.base_path)  # the base must be served there
        name = self.adapters.acquire(Path(request.adapter_path))
        return name, name

    def _reload(self, request: GenerationRequest, adapter: str) -> tuple[str, str | None]:
        log.info("the inference server forgot adapter %s; loading it again", adapter)
        assert request.adapter_path is not None
        self.adapters.reload(Path(request.adapter_path))
        return adapter, adapter

    def served_name(self, base_path: Path) -> str:
        """The server's name for a base: configured, else matched in its ``GET /v1/models``."""
        base_path = Path(base_path)
        for key in (str(base_path), base_path.name):
            if key in self.served_models:
                return self.served_models[key]
        for refresh in (False, True):
            bases = self._served_bases(refresh)
            for card in bases:
                if card.get("id") in (base_path.name, str(base_path)) or card.get("root") == str(base_path):
                    return str(card["id"])
            if len(bases) == 1:
                return str(bases[0]["id"])
        raise ServerError(
            f"The inference server at {self.transport.url} does not serve the base model "
            f"{base_path.name}; serve it under that name or map it in AFINAR_VLLM_SERVED_MODELS."
        )

    def _served_bases(self, refresh: bool) -> list[dict[str, Any]]:
        if self._bases is None or refresh:
            response = self.transport.get(MODELS)
            if response.status_code != 200:
                raise error_for(response.status_code, response.text, response.headers)
            listing = response.json()
            self.llamacpp = isinstance(listing.get("models"), list)  # llama.cpp adds Ollama's listing
            cards = listing.get("data") or []
            self._bases = [c for c in cards if isinstance(c, dict) and not c.get("parent") and c.get("id")]
        return self._bases

    async def _generate_once(self, request: GenerationRequest, model: str) -> GenerationResult:
        client = self.transport.client()
        with self._counting():
            try:
                response = await client.post(CHAT, json=request_body(request, model, stream=False))
            except httpx.HTTPError as exc:
                raise unreachable(self.transport.url, exc) from exc
        if response.status_code != 200:
            raise error_for(response.status_code, response.text, response.headers)
        return parse_result(response.json(), request)

    async def _stream_once(self, request: GenerationRequest, model: str) -> AsyncIterator[Event]:
        client = self.transport.client()
        state = StreamState(request.params.n, request.params.max_tokens)
        held: list[Event] = []  # until the prompt's token count is known
        started = False
        prefix = prefix_reported(request)
        with self._counting():
            try:
                async with client.stream(
                    "POST", CHAT, json=request_body(request, model, stream=True, llamacpp=self.llamacpp)
                ) as response:
                    if response.status_code != 200:
                        body = (await response.aread()).decode(errors="replace")
                        raise error_for(response.status_code, body, response.headers)
                    if prefix:
                        held.extend(Delta(i, prefix) for i in range(request.params.n))
                    async for chunk in server_sent_events(response):
                        state.read_usage(chunk)
                        held.extend(state.deltas(chunk, request.params.logprobs))
                        if not started and state.prompt_tokens is not None:
                            started = True
                            yield Started(state.prompt_tokens)
                        if started:
                            for event in _drain(held):
                                yield event
            except httpx.HTTPError as exc:
                raise unreachable(self.transport.url, exc) from exc
        if not started:
            yield Started(state.prompt_tokens or 0)
        for event in _drain(held):
            yield event
        for finished in state.finished():
            yield finished


def _drain(events: list[Event]) -> Iterable[Event]:
    while events:
        yield events.pop(0)


class _InFlight:
    """Counts a request as in flight for ``queued()`` while the block runs."""

    def __init__(self, engine: OpenAIHTTPEngine) -> None:
        self.engine = engine

    def __enter__(self) -> None:
        with self.engine._count_lock:
            self.engine._in_flight += 1

    def __exit__(self, *exc: object) -> None:
        with self.engine._count_lock:
            self.engine._in_flight -= 1


def build(context: EngineContext) -> OpenAIHTTPEngine:
    """The ``vllm`` backend (``inference/backends.py``), from ``AFINAR_VLLM_*`` settings."""
    s = context.settings
    return OpenAIHTTPEngine(
        s.vllm_url,
        api_key=s.vllm_api_key.get_secret_value(),
        served_models=s.vllm_served_models,
        adapter_cache_size=s.adapter_cache_size,
        opener=context.opener,
        adapter_dir=s.vllm_adapter_dir,
        adapter_dir_remote=s.vllm_adapter_dir_remote,
        timeout=s.vllm_timeout_seconds,
    )

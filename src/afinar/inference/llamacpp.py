"""The llama.cpp backend: llama.cpp's server embedded in this process through ``xllamacpp``.

Why it looks the way it does:

- **Prompts are token ids.** Each request is rendered with the model's Hugging Face tokenizer
  and chat template (:func:`~afinar.inference.engine.prompt_ids_for`, the code the built-in
  engine uses), and llama.cpp's completion endpoint receives the ids. So the template and the
  end-of-turn token served are the ones training used; llama.cpp's own template and
  pre-tokenizer never decide the prompt. llama.cpp stops at the GGUF's end-of-generation tokens,
  which the converter takes from the same tokenizer.
- **One llama.cpp server per base model**, with continuous batching over
  ``AFINAR_LLAMACPP_PARALLEL`` slots. Its LoRA adapters are fixed when it starts, so an adapter
  the server does not hold yet is converted to a GGUF LoRA (``inference/gguf.py``) and a new
  server is started with it beside the running one (the weights file is memory-mapped, so the
  two share the base in memory); new requests go to the new server while the old one finishes
  what it runs and is then closed. No caller waits for that except the request that needs the
  new adapter. Adapters form an LRU of ``adapter_cache_size`` per base; ``unload`` (a deleted
  model) drops one and deletes its GGUF.
- **Explicit LoRA scales on every request**: llama.cpp applies its global scales to a request
  without a ``lora`` field, so each request lists every adapter of its server, 1.0 for its own
  and 0.0 for the others (all 0.0 for the base). A known limit of llama.cpp's server (this
  build): one decode step batches only slots whose adapter scales equal those of the first busy
  slot, and it always starts from slot 0, so concurrent requests of *different* adapters of one
  base take turns group by group instead of decoding together (requests of the same adapter, or
  of the base, batch together). Conversions and server swaps never block other requests.
- **No prompt cache**: this llama.cpp build reuses a slot's cached prompt even when it was
  computed under another adapter, which changes the output, so ``cache_prompt`` is off.
- **Constraints** (tool calls, JSON formats) are llguidance grammars, which this llama.cpp build
  also runs (a ``%llguidance`` grammar): the same Lark text as the built-in engine's. A forced
  reply opening (``response_prefix``) is dropped then: the grammar forces the same text.
- Adapters converted from customer data are plaintext GGUF files: they live in a private
  directory under the scratch dir (0700, named after this process, so ``Scratch.sweep`` removes
  them after a crash) and are deleted when evicted, unloaded or when the engine closes.

Every request field maps to llama.cpp's own sampling parameters; none is refused (``docs/api.md``
lists the backends' differences: logprobs and the forced-prefix token count).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import queue
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import AbstractContextManager, aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from afinar.errors import AfinarError, NotFound, RateLimited, ServerError
from afinar.inference.engine import (
    _aiter_queue,
    _until_done,
    _until_done_sync,
    collect,
    prompt_ids_for,
)
from afinar.inference.gguf import adapter_gguf, base_gguf
from afinar.inference.grammar import JSON_STYLE
from afinar.inference.loader import TOKENIZER_FILES, Vocab, _load_vocab, is_full_model, path_key
from afinar.inference.types import (
    Constraint,
    Delta,
    Event,
    Failed,
    Finished,
    GenerationRequest,
    GenerationResult,
    Started,
    TokenLogprob,
    TopLogprob,
)

if TYPE_CHECKING:
    from afinar.inference.backends import EngineContext

log = logging.getLogger(__name__)

MAX_SLOT_CONTEXT = 8192  # tokens of KV cache per parallel slot, at most
Opener = Callable[[Path], AbstractContextManager[Path]]


def build(context: EngineContext) -> LlamaCppEngine:
    """The llama.cpp backend (``inference/backends.py``), sized by the settings."""
    settings = context.settings
    return LlamaCppEngine(
        cache_dir=settings.models_dir / "gguf",
        scratch_dir=settings.scratch_dir,
        base_type=settings.llamacpp_base_type,
        threads=settings.llamacpp_threads,
        parallel=settings.llamacpp_parallel,
        adapter_cache_size=settings.adapter_cache_size,
        max_queued_requests=settings.max_queued_requests,
        opener=context.opener,
    )


def default_threads() -> int:
    """llama.cpp's threads: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass
class _Server:
    """One llama.cpp server of a base model, holding a fixed list of adapters."""

    server: Any  # xllamacpp.Server
    adapters: tuple[str, ...]  # adapter keys, in llama.cpp's id order
    users: int = 0
    retired: bool = False

    def lora(self, adapter: str | None) -> list[dict[str, Any]]:
        """Every adapter's scale for one request: 1.0 for its own, 0.0 for the rest."""
        return [{"id": i, "scale": 1.0 if key == adapter else 0.0} for i, key in enumerate(self.adapters)]


@dataclass
class _Adapter:
    key: str
    path: Path
    gguf: Path
    vocab: Vocab | None  # the adapter's own tokenizer (template), if it carries one


@dataclass
class _Base:
    key: str
    path: Path
    gguf: Path
    vocab: Vocab
    slot_context: int
    adapters: OrderedDict[str, _Adapter] = field(default_factory=OrderedDict)  # LRU, newest last
    current: _Server | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _Call:
    """One admitted request: the server and scales it runs with, and its prompt."""

    base: _Base
    server: _Server
    adapter: str | None
    prompt: list[int]
    max_new: int


class LlamaCppEngine:
    def __init__(
        self,
        *,
        cache_dir: Path,
        scratch_dir: Path,
        base_type: str = "f16",
        threads: int = 0,
        parallel: int = 8,
        adapter_cache_size: int = 8,
        max_queued_requests: int = 32,
        opener: Opener | None = None,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.scratch_dir = Path(scratch_dir)
        self.base_type = base_type
        self.threads = threads or default_threads()
        self.parallel = max(1, parallel)
        self.adapter_cache_size = max(1, adapter_cache_size)
        self.max_queued_requests = max(1, max_queued_requests)
        self.opener = opener
        self._bases: dict[str, _Base] = {}
        self._lock = threading.Lock()  # the dicts above, the request count, closing
        self._load_lock = threading.Lock()  # one base conversion/load at a time
        self._active = 0
        self._converting: dict[str, threading.Lock] = {}
        self._closed = False
        self._adapter_dir: Path | None = None

    # --- InferenceEngine -------------------------------------------------------------------

    def submit(
        self,
        request: GenerationRequest,
        emit: Callable[[Event], None],
        cancelled: threading.Event,
        *,
        incremental: bool = True,
    ) -> None:
        """Run ``request`` in a thread; ``emit`` gets its events (from other threads).

        ``incremental``: text as it comes (llama.cpp's stream). Otherwise each choice arrives
        whole, which is exact for logprobs: llama.cpp's stream holds back a token that ends inside
        a UTF-8 character and then reports only the logprob of the token that completes it.
        """
        with self._lock:
            if self._closed:
                raise ServerError("The inference engine is shutting down.")
            if self._active >= self.parallel + self.max_queued_requests:
                raise RateLimited(
                    "The server is busy with other chat completions; please retry shortly.", retry_after=1.0
                )
            self._active += 1
        thread = threading.Thread(
            target=self._run,
            args=(request, emit, cancelled, incremental),
            name="afinar-llamacpp",
            daemon=True,
        )
        thread.start()

    def stream(self, request: GenerationRequest) -> AsyncGenerator[Event, None]:
        return self._events(request, incremental=True)

    async def _events(self, request: GenerationRequest, *, incremental: bool) -> AsyncGenerator[Event, None]:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Event] = asyncio.Queue()
        gone = threading.Event()

        def emit(event: Event) -> None:
            if gone.is_set():
                return
            try:
                loop.call_soon_threadsafe(events.put_nowait, event)
            except RuntimeError:  # the loop is closed: nobody listens any more
                gone.set()

        self.submit(request, emit, gone, incremental=incremental)
        try:
            async for event in _until_done(_aiter_queue(events), request.params.n):
                yield event
        finally:
            gone.set()

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        async with aclosing(self._events(request, incremental=False)) as events:
            return collect([event async for event in events], request.params.n)

    def iter_sync(
        self, request: GenerationRequest, timeout: float | None = None, *, incremental: bool = True
    ) -> Iterator[Event]:
        events: queue.Queue[Event] = queue.Queue()
        gone = threading.Event()
        self.submit(request, events.put, gone, incremental=incremental)
        try:
            yield from _until_done_sync(events, request.params.n, timeout)
        finally:
            gone.set()

    def generate_sync(self, request: GenerationRequest, timeout: float | None = None) -> GenerationResult:
        return collect(list(self.iter_sync(request, timeout, incremental=False)), request.params.n)

    def unload(self, adapter_path: Path) -> bool:
        """Forget a deleted model's adapter; its server is replaced on the next request."""
        key = path_key(adapter_path)
        with self._lock:
            full = self._bases.pop(key, None)  # a full fine-tune served as its own base
            bases = list(self._bases.values())
        if full is not None:
            self._retire(full)
            full.gguf.unlink(missing_ok=True)  # its conversion too (a mapped file may go)
            return True
        for base in bases:
            with base.lock:
                adapter = base.adapters.pop(key, None)
            if adapter is not None:
                adapter.gguf.unlink(missing_ok=True)
                return True
        return False

    def loaded_adapters(self) -> list[Path]:
        with self._lock:
            bases = list(self._bases.values())
        return [a.path for b in bases for a in list(b.adapters.values())]

    def queued(self) -> int:
        with self._lock:
            return max(0, self._active - self.parallel)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            bases = list(self._bases.values())
            self._bases.clear()
        for base in bases:
            self._retire(base)
        if self._adapter_dir is not None:
            shutil.rmtree(self._adapter_dir, ignore_errors=True)

    # --- one request -----------------------------------------------------------------------

    def _run(
        self,
        request: GenerationRequest,
        emit: Callable[[Event], None],
        cancelled: threading.Event,
        incremental: bool,
    ) -> None:
        call: _Call | None = None
        try:
            try:
                call = self._admit(request)
            except AfinarError as exc:
                emit(Failed(exc))
                return
            except Exception as exc:
                log.exception("llama.cpp: admitting a request failed")
                emit(Failed(ServerError(f"Generation failed: {exc}")))
                return
            emit(Started(prompt_tokens=len(call.prompt)))
            n = request.params.n
            threads = [
                threading.Thread(
                    target=self._choice, args=(call, request, i, emit, cancelled, incremental), daemon=True
                )
                for i in range(1, n)
            ]
            for thread in threads:
                thread.start()
            self._choice(call, request, 0, emit, cancelled, incremental)
            for thread in threads:
                thread.join()
        finally:
            if call is not None:
                self._release(call.server)
            with self._lock:
                self._active -= 1

    def _choice(
        self,
        call: _Call,
        request: GenerationRequest,
        index: int,
        emit: Callable[[Event], None],
        cancelled: threading.Event,
        incremental: bool,
    ) -> None:
        """Generate choice ``index``, emitting its deltas and its end."""
        body = _body(request, call, index)
        body["stream"] = incremental
        want_logprobs = request.params.logprobs
        top = request.params.top_logprobs
        prefix = request.response_prefix if request.constraint is None else ""
        state = {"finished": False, "error": None}
        if prefix:
            emit(Delta(index, prefix))

        def on_chunk(chunk: Any) -> bool:
            if cancelled.is_set():
                return True
            if isinstance(chunk, dict) and "error" in chunk:
                state["error"] = chunk["error"]
                return True
            for choice in chunk.get("choices", []):
                text = choice.get("text") or ""
                logprobs = _logprobs(choice.get("logprobs"), top) if want_logprobs else None
                if text or logprobs:
                    emit(Delta(index, text, logprobs))
                reason = choice.get("finish_reason")
                if reason:
                    usage = chunk.get("usage") or {}
                    state["finished"] = True
                    emit(Finished(index, _finish_reason(reason), int(usage.get("completion_tokens", 0))))
            return False

        try:
            if incremental:
                call.server.server.handle_completions(body, on_chunk)
            else:
                on_chunk(call.server.server.handle_completions(body))
        except Exception as exc:
            emit(Failed(ServerError(f"Generation failed: {exc}")))
            return
        if state["error"] is not None:
            emit(Failed(ServerError(f"Generation failed: {_message(state['error'])}")))
        elif not state["finished"] and not cancelled.is_set():
            emit(Failed(ServerError("Generation ended without a finish reason.")))

    # --- admission: base, adapter, server ---------------------------------------------------

    def _admit(self, request: GenerationRequest) -> _Call:
        base_path, adapter_path = Path(request.base_path), request.adapter_path
        if adapter_path is not None and is_full_model(Path(adapter_path)):
            base_path, adapter_path = Path(adapter_path), None  # a full fine-tune is its own base
        base = self._base(base_path, request.context_length)
        context = min(request.context_length or base.slot_context, base.slot_context)
        request = dataclasses.replace(request, context_length=context)
        for _ in range(3):  # an adapter evicted by others between conversion and use: again
            adapter = self._adapter(base, Path(adapter_path)) if adapter_path is not None else None
            with base.lock:
                if adapter is not None and adapter.key not in base.adapters:
                    continue
                vocab = adapter.vocab if adapter is not None and adapter.vocab is not None else base.vocab
                # Rendering takes a millisecond; the lock keeps the server and the LRU consistent.
                prompt, max_new = prompt_ids_for(request, vocab, base.slot_context)
                server = self._server(base)
                with self._lock:  # the count _release and _retire_server read
                    server.users += 1
            return _Call(base, server, adapter.key if adapter else None, prompt, max_new)
        raise RateLimited("Too many adapters are in use at once; please retry shortly.", retry_after=1.0)

    def _base(self, path: Path, context: int | None) -> _Base:
        """The base, converted and tokenizer loaded; its slots hold ``context`` tokens (the
        catalogue's context length, from the first request), else the model's own."""
        key = path_key(path)
        with self._lock:
            base = self._bases.get(key)
        if base is not None:
            return base
        with self._load_lock:
            with self._lock:
                base = self._bases.get(key)
            if base is not None:
                return base
            if not (path / "config.json").is_file():
                raise NotFound(f"model weights not found at {path}", code="model_not_found")
            gguf = base_gguf(path, self.cache_dir, self.base_type)
            vocab = _load_vocab(path, path)
            slot_context = min(context or _max_positions(path), MAX_SLOT_CONTEXT)
            base = _Base(key=key, path=path, gguf=gguf, vocab=vocab, slot_context=slot_context)
            with self._lock:
                if self._closed:
                    raise ServerError("The inference engine is shutting down.")
                self._bases[key] = base
            log.info("llama.cpp: base %s from %s", path, gguf)
            return base

    def _adapter(self, base: _Base, path: Path) -> _Adapter:
        """The adapter, converted on first use (outside ``base.lock``: other requests of the base
        go on meanwhile); the base's LRU puts it last."""
        key = path_key(path)
        with base.lock:
            adapter = base.adapters.get(key)
            if adapter is not None:
                base.adapters.move_to_end(key)
                return adapter
        with self._lock:
            converting = self._converting.setdefault(key, threading.Lock())
        with converting:  # one conversion per adapter
            with base.lock:
                adapter = base.adapters.get(key)
            if adapter is None:
                adapter = self._convert_adapter(base, path, key)
                with base.lock:
                    base.adapters[key] = adapter
                    while len(base.adapters) > self.adapter_cache_size:
                        _, evicted = base.adapters.popitem(last=False)
                        evicted.gguf.unlink(missing_ok=True)  # running servers hold it in memory
                        log.info("llama.cpp: evicted adapter %s", evicted.path)
        with self._lock:
            self._converting.pop(key, None)
        return adapter

    def _convert_adapter(self, base: _Base, path: Path, key: str) -> _Adapter:
        dest = self._adapters_dir() / (hashlib.sha1(key.encode()).hexdigest()[:20] + ".gguf")
        source_ctx: AbstractContextManager[Path]
        if not (path / "adapter_config.json").is_file() and self.opener is not None:
            source_ctx = self.opener(path)  # decrypted for the duration of the conversion
        else:
            source_ctx = contextlib.nullcontext(path)
        with source_ctx as source:
            if not (source / "adapter_config.json").is_file():
                raise NotFound(f"adapter not found at {path}", code="model_not_found")
            adapter_gguf(source, base.path, dest)
            has_tokenizer = any((source / f).is_file() for f in TOKENIZER_FILES)
            vocab = _load_vocab(source, base.path, source) if has_tokenizer else None
        return _Adapter(key=key, path=path, gguf=dest, vocab=vocab)

    def _adapters_dir(self) -> Path:
        """A private directory for plaintext adapter GGUFs, named as scratch entries are."""
        if self._adapter_dir is None:
            self.scratch_dir.mkdir(parents=True, exist_ok=True)
            self._adapter_dir = Path(
                tempfile.mkdtemp(dir=self.scratch_dir, prefix=f"{os.getpid()}-llamacpp-")
            )
        return self._adapter_dir

    def _server(self, base: _Base) -> _Server:
        """The server holding exactly the base's adapters, started if needed (caller holds base.lock)."""
        wanted = tuple(base.adapters)
        current = base.current
        if current is not None and current.adapters == wanted:
            return current
        server = _Server(self._start(base, [base.adapters[k].gguf for k in wanted]), wanted)
        base.current = server
        if current is not None:
            self._retire_server(current)
        return server

    def _start(self, base: _Base, loras: list[Path]) -> Any:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(base.gguf)
        params.n_parallel = self.parallel
        params.n_ctx = base.slot_context * self.parallel
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        params.warmup = False
        params.verbosity = -1 if not log.isEnabledFor(logging.DEBUG) else 3
        params.cache_prompt = False
        params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(p), 0.0) for p in loras]
        server = xllamacpp.Server(params)
        log.info("llama.cpp: started a server for %s with %d adapters", base.path, len(loras))
        return server

    def _release(self, server: _Server) -> None:
        with self._lock:
            server.users -= 1
            done = server.retired and server.users <= 0
        if done:
            _stop(server)

    def _retire(self, base: _Base) -> None:
        """Stop serving a base: its server closes once idle, its adapter files go."""
        with base.lock:
            current, base.current = base.current, None
            adapters = list(base.adapters.values())
            base.adapters.clear()
        for adapter in adapters:
            adapter.gguf.unlink(missing_ok=True)
        if current is not None:
            self._retire_server(current)

    def _retire_server(self, server: _Server) -> None:
        with self._lock:
            server.retired = True
            idle = server.users <= 0
        if idle:
            _stop(server)


def _stop(server: _Server) -> None:
    """Drop the last reference: llama.cpp's server stops its loop and frees its memory."""
    server.server = None


def _max_positions(path: Path) -> int:
    config = json.loads((path / "config.json").read_text())
    return int(config.get("max_position_embeddings") or 2048)


def _body(request: GenerationRequest, call: _Call, index: int) -> dict[str, Any]:
    """llama.cpp's completion request for one choice (OpenAI's sampling, nothing of llama.cpp's)."""
    params = request.params
    body: dict[str, Any] = {
        "prompt": call.prompt,
        "max_tokens": call.max_new,
        "cache_prompt": False,
        "temperature": params.temperature,
        "top_p": params.top_p,
        # llama.cpp's own samplers off: OpenAI's temperature and top_p only
        "top_k": 0,
        "min_p": 0.0,
        "typical_p": 1.0,
        "repeat_penalty": 1.0,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
        "lora": call.server.lora(call.adapter),
    }
    if params.seed is not None:
        body["seed"] = (params.seed + index) % (2**32 - 1)  # choices of one request differ
    if params.logit_bias:
        body["logit_bias"] = [[token, bias] for token, bias in params.logit_bias.items()]
    if params.logprobs:
        body["n_probs"] = max(1, params.top_logprobs)
    if request.constraint is not None:
        body["grammar"] = "%llguidance {}\n" + _lark(request.constraint)
    elif params.stop:
        body["stop"] = list(params.stop)
    return body


def _lark(constraint: Constraint) -> str:
    """The constraint as llguidance Lark (a JSON Schema becomes ``start: %json {...}``)."""
    if constraint.lark is not None:
        return constraint.lark
    options = {**JSON_STYLE, "lenient": True} if constraint.lenient else JSON_STYLE
    return "start: %json " + json.dumps({**(constraint.json_schema or {}), "x-guidance": options}) + "\n"


def _logprobs(data: Any, top: int) -> list[TokenLogprob] | None:
    if not isinstance(data, dict) or not data.get("content"):
        return None
    return [
        TokenLogprob(
            token=str(item.get("token", "")),
            logprob=float(item.get("logprob", 0.0)),
            bytes=item.get("bytes"),
            top_logprobs=[
                TopLogprob(
                    token=str(t.get("token", "")), logprob=float(t.get("logprob", 0.0)), bytes=t.get("bytes")
                )
                for t in (item.get("top_logprobs") or [])[:top]
            ],
        )
        for item in data["content"]
    ]


def _finish_reason(reason: str) -> str:
    return "length" if reason == "length" else "stop"


def _message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)

"""The llama.cpp backend: llama.cpp's server embedded in this process through ``xllamacpp``.

Why it looks the way it does:

- **Prompts are token ids.** Each request is rendered with the model's Hugging Face tokenizer
  and chat template (:func:`~afinar.inference.engine.prompt_ids_for`, the code the built-in
  engine uses), and llama.cpp's completion endpoint receives the ids. So the template and the
  end-of-turn token served are the ones training used; llama.cpp's own template and
  pre-tokenizer never decide the prompt. llama.cpp stops at the GGUF's end-of-generation tokens,
  which the converter takes from the same tokenizer.
- **llama.cpp servers per base model** (``inference/llamacpp_pool.py``), with continuous
  batching over ``AFINAR_LLAMACPP_PARALLEL`` slots. Its LoRA adapters are fixed when a server
  starts, so an adapter the base does not hold yet is converted to a GGUF LoRA
  (``inference/gguf.py``; a published adapter ships one, ``adapter.gguf``, made when its job
  published) and new servers are started with it beside the running ones (the weights file is
  memory-mapped, so they share the base in memory); new requests go to the new servers while
  the old ones finish what they run and are then closed. No caller waits for that except the
  request that needs the new adapter. Adapters form an LRU of ``adapter_cache_size`` per base;
  ``unload`` (a deleted model) drops one and deletes its GGUF.
- **Lanes, so different adapters do not take turns**: one llama.cpp server batches in a decode
  step only the slots whose adapter scales equal those of the first busy slot, so concurrent
  requests of different adapters of one base would be served group after group. A base has up
  to ``AFINAR_LLAMACPP_LANES`` servers ("lanes"): the wide lane 0 with all threads, used when
  the base is otherwise idle, and one-thread lanes for concurrent requests, started when needed
  and stopped when idle (``llamacpp_pool.choose_lane``). Within one lane, different adapters
  still take turns.
- **Explicit LoRA scales on every request**: llama.cpp applies its global scales to a request
  without a ``lora`` field, so each request lists every adapter of its server, 1.0 for its own
  and 0.0 for the others (all 0.0 for the base). Conversions and server swaps never block other
  requests.
- **No prompt cache**: this llama.cpp build reuses a slot's cached prompt even when it was
  computed under another adapter, which changes the output, so ``cache_prompt`` is off.
- **Constraints** (tool calls, JSON formats) are llguidance grammars, which this llama.cpp build
  also runs (a ``%llguidance`` grammar): the same Lark text as the built-in engine's. A forced
  reply opening (``response_prefix``) is dropped then: the grammar forces the same text.
- Adapters converted from customer data are plaintext GGUF files: they live in a private
  directory under the scratch dir (0700, named after this process, so ``Scratch.sweep`` removes
  them after a crash) and are deleted when evicted, unloaded or when the engine closes.

The request body and its answer's mapping live in ``inference/llamacpp_request.py``.
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
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import AbstractContextManager, aclosing
from dataclasses import dataclass
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
from afinar.inference.gguf import ADAPTER_GGUF, adapter_gguf, base_gguf
from afinar.inference.llamacpp_pool import (
    Adapter,
    Base,
    Lane,
    Server,
    choose_lane,
    default_lanes,
    lane_shape,
    start_server,
    stop_server,
)
from afinar.inference.llamacpp_request import completion_body, error_message, finish_reason, logprobs
from afinar.inference.loader import TOKENIZER_FILES, _load_vocab, is_full_model, path_key
from afinar.inference.types import (
    Delta,
    Event,
    Failed,
    Finished,
    GenerationRequest,
    GenerationResult,
    Started,
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
        lanes=settings.llamacpp_lanes,
        lane_idle_s=settings.llamacpp_lane_idle_s,
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
class _Call:
    """One admitted request: the lane, server and scales it runs with, and its prompt."""

    base: Base
    lane: Lane
    server: Server
    adapter: str | None
    prompt: list[int]
    max_new: int
    unfinished: int = 1  # choices still generating; the lane counts the request until none is
    on_lane: bool = True


class LlamaCppEngine:
    def __init__(
        self,
        *,
        cache_dir: Path,
        scratch_dir: Path,
        base_type: str = "f16",
        threads: int = 0,
        parallel: int = 8,
        lanes: int = 0,
        lane_idle_s: float = 60.0,
        adapter_cache_size: int = 8,
        max_queued_requests: int = 32,
        opener: Opener | None = None,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.scratch_dir = Path(scratch_dir)
        self.base_type = base_type
        self.threads = threads or default_threads()
        self.parallel = max(1, parallel)
        self.lanes = lanes or default_lanes(default_threads())  # 1: one server per base
        self.lane_idle_s = lane_idle_s  # a one-thread lane stops after this long without work
        self.adapter_cache_size = max(1, adapter_cache_size)
        self.max_queued_requests = max(1, max_queued_requests)
        self.opener = opener
        self._bases: dict[str, Base] = {}
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
            call.unfinished = n
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
                self._release(call)
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
        body = completion_body(request, call.prompt, call.max_new, call.server.lora(call.adapter), index)
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
                tokens = logprobs(choice.get("logprobs"), top) if want_logprobs else None
                if text or tokens:
                    emit(Delta(index, text, tokens))
                reason = choice.get("finish_reason")
                if reason:
                    usage = chunk.get("usage") or {}
                    state["finished"] = True
                    self._choice_done(call)  # first: the caller may send its next request at once
                    emit(Finished(index, finish_reason(reason), int(usage.get("completion_tokens", 0))))
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
            emit(Failed(ServerError(f"Generation failed: {error_message(state['error'])}")))
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
                key = adapter.key if adapter is not None else None
                lane, server, loras = self._lane(base, key)
                with self._lock:  # the counts _release, _retire_server and choose_lane read
                    server.users += 1
                    lane.running[key] += 1
                    lane.admitted += 1
            call = _Call(base, lane, server, key, prompt, max_new)
            if loras is not None:
                self._start(base, lane, server, loras)
            server.ready.wait()
            if server.failure is None:
                return call
            self._release(call)
            with base.lock:
                dropped = not set(server.adapters) <= set(base.adapters)
            if not dropped:  # not an adapter file evicted while the server started: give up
                raise ServerError(f"Starting llama.cpp failed: {server.failure}") from server.failure
        raise RateLimited("Too many adapters are in use at once; please retry shortly.", retry_after=1.0)

    def _base(self, path: Path, context: int | None) -> Base:
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
            base = Base(key=key, path=path, gguf=gguf, vocab=vocab, slot_context=slot_context)
            with self._lock:
                if self._closed:
                    raise ServerError("The inference engine is shutting down.")
                self._bases[key] = base
            log.info("llama.cpp: base %s from %s", path, gguf)
            return base

    def _adapter(self, base: Base, path: Path) -> Adapter:
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

    def _convert_adapter(self, base: Base, path: Path, key: str) -> Adapter:
        dest = self._adapters_dir() / (hashlib.sha1(key.encode()).hexdigest()[:20] + ".gguf")
        source_ctx: AbstractContextManager[Path]
        if not (path / "adapter_config.json").is_file() and self.opener is not None:
            source_ctx = self.opener(path)  # decrypted for the duration of the conversion
        else:
            source_ctx = contextlib.nullcontext(path)
        with source_ctx as source:
            if not (source / "adapter_config.json").is_file():
                raise NotFound(f"adapter not found at {path}", code="model_not_found")
            shipped = source / ADAPTER_GGUF
            if shipped.is_file():  # converted when its job published: copied, never converted again
                shutil.copyfile(shipped, dest)
            else:
                adapter_gguf(source, base.path, dest)
            has_tokenizer = any((source / f).is_file() for f in TOKENIZER_FILES)
            vocab = _load_vocab(source, base.path, source) if has_tokenizer else None
        return Adapter(key=key, path=path, gguf=dest, vocab=vocab)

    def _adapters_dir(self) -> Path:
        """A private directory for plaintext adapter GGUFs, named as scratch entries are."""
        if self._adapter_dir is None:
            self.scratch_dir.mkdir(parents=True, exist_ok=True)
            self._adapter_dir = Path(
                tempfile.mkdtemp(dir=self.scratch_dir, prefix=f"{os.getpid()}-llamacpp-")
            )
        return self._adapter_dir

    def _lane(self, base: Base, adapter: str | None) -> tuple[Lane, Server, list[Path] | None]:
        """The lane a request of ``adapter`` runs on and a server of it that holds ``adapter``
        and no adapter the base dropped; a new one for all the base's adapters if the current one
        does not, with the GGUFs to start it with: the caller starts it (:meth:`_start`) once it
        has let go of ``base.lock``, which it holds here."""
        with self._lock:
            index = choose_lane(base.lanes, adapter, self.lanes)
        if index == len(base.lanes):
            threads, parallel = lane_shape(
                index, threads=self.threads, parallel=self.parallel, lanes=self.lanes
            )
            base.lanes.append(Lane(index=index, threads=threads, parallel=parallel))
        lane = base.lanes[index]
        wanted = tuple(base.adapters)
        current = lane.current
        if current is not None and current.serves(adapter, wanted):
            return lane, current, None
        server = Server(None, wanted)
        lane.current = server
        if current is not None:
            self._retire_server(current)
        return lane, server, [base.adapters[k].gguf for k in wanted]

    def _start(self, base: Base, lane: Lane, server: Server, loras: list[Path]) -> None:
        """Start a lane's new ``server`` (without ``base.lock``: other lanes' requests go on, and
        a burst's lanes start side by side). If it fails, the lane forgets it, so the next request
        starts another, and those waiting on it see ``failure``."""
        try:
            server.server = start_server(base, lane, loras, debug=log.isEnabledFor(logging.DEBUG))
        except Exception as exc:
            log.warning("llama.cpp: starting lane %d of %s failed: %s", lane.index, base.path, exc)
            server.failure = exc
            with base.lock:
                if lane.current is server:
                    lane.current = None
        finally:
            server.ready.set()
        with self._lock:  # retired while it started, and nobody left to use it
            stop = server.retired and server.users <= 0
        if stop:
            stop_server(server)

    def warm(self, base_path: Path, context_length: int | None = None) -> threading.Thread:
        """Convert ``base_path`` and start its lane 0 in a background thread, so the first request
        does not wait for the conversion; failures are logged (the first request retries)."""

        def run() -> None:
            try:
                base = self._base(Path(base_path), context_length)
                with base.lock:
                    lane, server, loras = self._lane(base, None)
                if loras is not None:
                    self._start(base, lane, server, loras)
                server.ready.wait()
                if server.failure is not None:
                    raise server.failure
                log.info("llama.cpp: %s is warm", base_path)
            except Exception:
                log.exception("llama.cpp: warming %s failed", base_path)

        thread = threading.Thread(target=run, name="afinar-llamacpp-warm", daemon=True)
        thread.start()
        return thread

    def _choice_done(self, call: _Call) -> None:
        """One choice has finished; with the last one the request leaves its lane's count, so that
        a request sent as soon as this one's answer arrives finds the lane idle."""
        with self._lock:
            call.unfinished -= 1
            if call.unfinished <= 0:
                self._leave_lane(call)

    def _leave_lane(self, call: _Call) -> None:  # caller holds self._lock
        if call.on_lane:
            call.on_lane = False
            call.lane.running[call.adapter] -= 1
            if call.lane.running[call.adapter] <= 0:
                del call.lane.running[call.adapter]

    def _release(self, call: _Call) -> None:
        with self._lock:
            self._leave_lane(call)
            call.server.users -= 1
            done = call.server.retired and call.server.users <= 0
            idle_lane = call.lane.index > 0 and call.lane.busy == 0
            admitted = call.lane.admitted
        if done:
            stop_server(call.server)
        if idle_lane:
            self._stop_when_idle(call.base, call.lane, admitted)

    def _stop_when_idle(self, base: Base, lane: Lane, admitted: int) -> None:
        """Stop a one-thread lane's server once it has had no work for ``lane_idle_s`` seconds
        (its KV cache is memory); it starts again when a burst needs it. One timer per lane at a
        time: a lane used again before it fires gets a new wait from there."""
        if self.lane_idle_s <= 0:
            self._stop_lane(base, lane, admitted)
            return
        with self._lock:
            if lane.idle_timer is not None or self._closed:
                return
            lane.idle_timer = threading.Timer(self.lane_idle_s, self._stop_lane, (base, lane, admitted))
            lane.idle_timer.daemon = True
            lane.idle_timer.start()

    def _stop_lane(self, base: Base, lane: Lane, admitted: int) -> None:
        again = None
        with base.lock, self._lock:
            lane.idle_timer = None
            if self._closed or lane.busy or lane.current is None:
                return  # busy again (its next idle moment starts a new wait), or stopped
            if lane.admitted != admitted:
                again = lane.admitted  # used and idle again since: wait from now
            else:
                server, lane.current = lane.current, None
        if again is not None:
            self._stop_when_idle(base, lane, again)
            return
        log.info("llama.cpp: lane %d of %s stopped (idle)", lane.index, base.path)
        self._retire_server(server)

    def _retire(self, base: Base) -> None:
        """Stop serving a base: its server closes once idle, its adapter files go."""
        with base.lock:
            servers = [lane.current for lane in base.lanes if lane.current is not None]
            for lane in base.lanes:
                lane.current = None
                if lane.idle_timer is not None:
                    lane.idle_timer.cancel()
                    lane.idle_timer = None
            adapters = list(base.adapters.values())
            base.adapters.clear()
        for adapter in adapters:
            adapter.gguf.unlink(missing_ok=True)
        for server in servers:
            self._retire_server(server)

    def _retire_server(self, server: Server) -> None:
        with self._lock:
            server.retired = True
            idle = server.users <= 0
        if idle:
            stop_server(server)


def _max_positions(path: Path) -> int:
    config = json.loads((path / "config.json").read_text())
    return int(config.get("max_position_embeddings") or 2048)

"""The built-in transformers + peft engine: one worker thread, a bounded queue, continuous batching.

Requests are queued (``max_queued_requests`` waiting at most, else ``RateLimited``) and served by
one worker thread, so the asyncio event loop never runs model code. The worker keeps one running
:class:`~afinar.inference.batch.Batch` per base model: waiting requests of the same base (any
adapter) join it between decode steps, up to ``max_batch_size`` rows. Requests for another base
wait until the running batch drains. A request with a ``constraint`` (forced tool calls, JSON
schemas) gets one grammar matcher per choice, built when it is admitted (an uncompilable grammar
is refused with ``InvalidRequest`` before ``Started``); its rows are masked at every step and end
when their grammar is complete. Rows without one pay nothing for it.

API, for the route layer (``services/chat.py``):

- ``async for event in engine.stream(request)`` → ``Started``, then ``Delta``/``Finished`` events;
  errors are raised (``AfinarError`` before ``Started`` means the request was refused);
- ``await engine.generate(request)`` → :class:`GenerationResult`;
- ``engine.iter_sync(request)`` / ``engine.generate_sync(request)`` for threads, tests and benches;
- ``engine.unload(adapter_path)`` when a model is deleted; ``engine.close()``.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from afinar.errors import AfinarError, InvalidRequest, RateLimited, ServerError
from afinar.inference.batch import Batch, Job
from afinar.inference.loader import ModelStore, Vocab, is_full_model, path_key
from afinar.inference.types import (
    Choice,
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
    from afinar.inference.guide import Guide

log = logging.getLogger(__name__)


def build(context: EngineContext) -> HFEngine:
    """The built-in backend (``inference/backends.py``), sized by the settings."""
    settings = context.settings
    engine = HFEngine(
        adapter_cache_size=settings.adapter_cache_size,
        max_queued_requests=settings.max_queued_requests,
        max_batch_size=settings.max_batch_size,
    )
    engine.store.opener = context.opener
    return engine


def _serving_key(request: GenerationRequest) -> str:
    """Which loaded weights serve the request: the base, or a full fine-tune's own directory."""
    if request.adapter_path is not None and is_full_model(Path(request.adapter_path)):
        return path_key(request.adapter_path)
    return path_key(request.base_path)


class HFEngine:
    def __init__(
        self,
        *,
        adapter_cache_size: int = 8,
        max_queued_requests: int = 32,
        max_batch_size: int = 8,
    ) -> None:
        self.store = ModelStore(adapter_cache_size)
        self.max_queued_requests = max(1, max_queued_requests)
        self.max_batch_size = max(1, max_batch_size)
        self._waiting: deque[tuple[Job, str]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._seconds_per_request = 2.0  # moving average, for Retry-After
        self.stats = {"requests": 0, "steps": 0, "max_batch_rows": 0, "max_batch_adapters": 0}

    # --- submission ----------------------------------------------------------------------

    def submit(self, request: GenerationRequest, emit: Any, cancelled: threading.Event | None = None) -> Job:
        """Queue a request; ``emit`` is called from the worker thread with each event.

        Setting ``cancelled`` (or ``job.cancelled``) makes the worker drop the request.
        """
        job = Job(request=request, emit=emit, cancelled=cancelled or threading.Event())
        key = _serving_key(request)
        with self._cond:
            if self._closed:
                raise ServerError("The inference engine is shutting down.")
            if len(self._waiting) >= self.max_queued_requests:
                wait = self._seconds_per_request * len(self._waiting) / self.max_batch_size
                raise RateLimited(
                    "The server is busy with other chat completions; please retry shortly.",
                    retry_after=min(60.0, max(1.0, wait)),
                )
            self._waiting.append((job, key))
            self._cond.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="afinar-inference", daemon=True)
                self._thread.start()
        return job

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Event, None]:
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

        job = self.submit(request, emit, gone)
        try:
            async for event in _until_done(_aiter_queue(events), request.params.n):
                yield event
        finally:
            job.cancelled.set()

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        async with aclosing(self.stream(request)) as events:  # closed (so cancelled) on cancellation
            return collect([event async for event in events], request.params.n)

    def iter_sync(self, request: GenerationRequest, timeout: float | None = None) -> Iterator[Event]:
        events: queue.Queue[Event] = queue.Queue()
        job = self.submit(request, events.put)
        try:
            yield from _until_done_sync(events, request.params.n, timeout)
        finally:
            job.cancelled.set()

    def generate_sync(self, request: GenerationRequest, timeout: float | None = None) -> GenerationResult:
        return collect(list(self.iter_sync(request, timeout)), request.params.n)

    # --- management ----------------------------------------------------------------------

    def unload(self, adapter_path: Path) -> bool:
        """Forget a deleted model's adapter; waits for the current decode step at most."""
        with self.store.lock:
            return self.store.unload(Path(adapter_path))

    def loaded_adapters(self) -> list[Path]:
        with self.store.lock:
            return self.store.loaded_adapters()

    def queued(self) -> int:
        with self._cond:
            return len(self._waiting)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            waiting = [job for job, _ in self._waiting]
            self._waiting.clear()
            self._cond.notify_all()
        for job in waiting:
            job.emit(Failed(ServerError("The inference engine shut down.")))
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    # --- worker --------------------------------------------------------------------------

    def _run(self) -> None:
        batch: Batch | None = None
        while True:
            running = batch is not None and len(batch) > 0
            if self._closed and running:
                break
            job = self._next_job(batch if running else None)
            if job is None and not running:
                if self._closed:
                    break
                continue
            try:
                if job is not None:
                    batch = self._admit(job, batch if running else None)
                elif batch is not None:
                    self._step(batch)
            except Exception as exc:  # a bug or an out-of-memory: fail what was running, go on
                log.exception("inference step failed")
                if batch is not None:
                    self._fail_all(batch, exc)
                    batch = None
        if batch is not None and len(batch):
            self._fail_all(batch, ServerError("The inference engine shut down."))

    def _next_job(self, batch: Batch | None) -> Job | None:
        """The next job to admit; blocks (briefly) only when nothing is running."""
        with self._cond:
            while True:
                for item in [i for i in self._waiting if i[0].cancelled.is_set()]:
                    self._waiting.remove(item)
                if batch is None:
                    if self._waiting:
                        return self._waiting.popleft()[0]
                    if self._closed:
                        return None
                    self._cond.wait(timeout=0.5)
                    if not self._waiting:
                        return None
                    continue
                for item in self._waiting:
                    job, key = item
                    if key != batch.base.key:
                        return None  # an older request for another base: let this batch drain
                    if batch.accepts(job):
                        self._waiting.remove(item)
                        return job
                    return None
                return None

    def _admit(self, job: Job, batch: Batch | None) -> Batch | None:
        job.started_at = time.monotonic()
        self.stats["requests"] += 1
        request = job.request
        with self.store.lock:
            try:
                base, adapter = self.store.acquire(request.base_path, request.adapter_path)
            except Exception as exc:
                job.emit(Failed(exc))
                return batch
            job.adapter = adapter
            try:
                vocab = adapter.vocab if adapter is not None else base.vocab
                prompt_ids, max_new = prompt_ids_for(request, vocab, base.max_positions)
                guide = _guide(request, vocab)
            except Exception as exc:
                self.store.release(adapter)
                job.emit(Failed(exc))
                return batch
            if batch is None or batch.base is not base:
                batch = Batch(base, self.max_batch_size)
            try:
                events = batch.prefill(job, prompt_ids, vocab, max_new, guide)
            except Exception as exc:
                self.store.release(adapter)
                job.done = True
                job.emit(Failed(ServerError(f"Generation failed: {exc}")))
                raise  # the batch may be half-merged: the worker fails it as a whole
            self._deliver([(job, e) for e in events])
        return batch

    def _step(self, batch: Batch) -> None:
        with self.store.lock:
            for job in {row.job for row in batch.rows if row.job.cancelled.is_set()}:
                batch.cancel(job)
                self._job_done(job)
            if len(batch):
                self.stats["steps"] += 1
                self.stats["max_batch_rows"] = max(self.stats["max_batch_rows"], len(batch))
                adapters = len({row.adapter_name for row in batch.rows})
                self.stats["max_batch_adapters"] = max(self.stats["max_batch_adapters"], adapters)
                self._deliver(batch.step())

    def _deliver(self, events: Iterable[tuple[Job, Event]]) -> None:
        for job, event in events:
            job.emit(event)
            if isinstance(event, Finished):
                job.rows_left -= 1
                if job.rows_left <= 0:
                    self._job_done(job)

    def _job_done(self, job: Job) -> None:
        if job.done:
            return
        job.done = True
        self.store.release(job.adapter)
        if job.started_at:
            elapsed = time.monotonic() - job.started_at
            self._seconds_per_request = 0.8 * self._seconds_per_request + 0.2 * elapsed

    def _fail_all(self, batch: Batch, exc: BaseException) -> None:
        error = exc if isinstance(exc, AfinarError) else ServerError(f"Generation failed: {exc}")
        with self.store.lock:
            for job in {row.job for row in batch.rows}:
                job.emit(Failed(error))
                self._job_done(job)
            batch.rows.clear()


def prompt_ids_for(request: GenerationRequest, vocab: Vocab, max_positions: int) -> tuple[list[int], int]:
    """Token ids of the rendered prompt (training's template) and the number of tokens allowed.

    Every backend renders prompts here, with the model's own tokenizer, so what is served is
    what training saw. ``InvalidRequest`` (``context_length_exceeded``) when it does not fit."""
    from afinar.datasets.encoding import render_prompt

    try:
        text = render_prompt(vocab.tokenizer, request.messages, request.tools)
    except Exception as exc:  # jinja errors: roles that the template refuses, and the like
        raise InvalidRequest(f"The messages could not be rendered: {exc}", param="messages") from exc
    ids = list(vocab.tokenizer(text + request.response_prefix, add_special_tokens=False)["input_ids"])
    context = request.context_length or max_positions
    asked = request.params.max_tokens
    if len(ids) >= context or (asked is not None and len(ids) + asked > context):
        detail = (
            f"you requested {len(ids) + asked} tokens ({len(ids)} in the messages, {asked} in the completion)"
            if asked is not None
            else f"your messages resulted in {len(ids)} tokens"
        )
        raise InvalidRequest(
            f"This model's maximum context length is {context} tokens. However, {detail}. "
            "Please reduce the length of the messages or completion.",
            param="messages",
            code="context_length_exceeded",
        )
    return ids, asked if asked is not None else context - len(ids)


def _guide(request: GenerationRequest, vocab: Vocab) -> Guide | None:
    """The grammar state for a constrained request (it has read the forced reply opening)."""
    if request.constraint is None:
        return None
    from afinar.inference.guide import Guide

    return Guide.start(request.constraint, vocab, request.response_prefix)


async def _aiter_queue(events: asyncio.Queue[Event]) -> AsyncIterator[Event]:
    while True:
        yield await events.get()


async def _until_done(events: AsyncIterator[Event], n: int) -> AsyncIterator[Event]:
    finished = 0
    async for event in events:
        if isinstance(event, Failed):
            raise event.error
        yield event
        if isinstance(event, Finished):
            finished += 1
            if finished >= n:
                return


def _until_done_sync(events: queue.Queue[Event], n: int, timeout: float | None) -> Iterator[Event]:
    finished = 0
    while finished < n:
        event = events.get(timeout=timeout)
        if isinstance(event, Failed):
            raise event.error
        yield event
        if isinstance(event, Finished):
            finished += 1


def collect(events: list[Event], n: int) -> GenerationResult:
    """Fold a finished stream of events into a non-streaming result."""
    choices = [Choice(index=i) for i in range(n)]
    prompt_tokens = 0
    for event in events:
        if isinstance(event, Started):
            prompt_tokens = event.prompt_tokens
        elif isinstance(event, Delta):
            choice = choices[event.index]
            choice.text += event.text
            if event.logprobs is not None:
                choice.logprobs = (choice.logprobs or []) + event.logprobs
        elif isinstance(event, Finished):
            choices[event.index].finish_reason = event.finish_reason
            choices[event.index].completion_tokens = event.completion_tokens
    return GenerationResult(prompt_tokens=prompt_tokens, choices=choices)

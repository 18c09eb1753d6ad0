"""The llama.cpp servers of the backend: per base model, *lanes* of servers, and which lane a
request runs on.

llama.cpp's server batches in one decode step only the slots whose LoRA scales equal those of
the first busy slot, always starting from slot 0: on one server, concurrent requests of
different adapters take turns group by group. So a base has up to ``lanes`` servers on the same
GGUF (memory-mapped: the base's weights are in memory once), each holding all of the base's
adapters:

- lane 0, the *wide* lane, runs with ``threads`` threads (all cores by default) and
  ``parallel`` slots: a single stream decodes there at llama.cpp's full speed;
- the other lanes run with one thread each and fewer slots (``parallel // (lanes - 1)``, at
  least 2, which bounds their KV cache); they start when needed and stop after ``idle_s``
  seconds without work. Several one-thread servers share the cores well, even more of them than
  cores; a multi-threaded one beside busy neighbours does not (its threads wait for each other
  at every step while the neighbours hold the cores), so the wide lane takes new work only while
  the whole base is idle.

:func:`choose_lane` places a request: on the wide lane when the base runs nothing; else on an
idle one-thread lane, or a new one while under the cap; only then on a lane already decoding its
adapter (they batch), or the least loaded one (where it takes turns with the other adapters, as
on a single server).

A lane's server holds a fixed list of adapters (llama.cpp fixes them at start). A lane gets a new
server when a request needs an adapter its server lacks, or the base dropped one the server
holds (evicted, or a deleted model's); the old one closes once the requests it runs are done: no
caller sees a restart. Using the adapters in any order never restarts a server. A server starts
outside the base's lock (half a second or more): the lanes of a burst start side by side, and
requests for running lanes never wait for them; requests placed on a starting server wait for
its ``ready``.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afinar.inference.loader import Vocab

log = logging.getLogger(__name__)


@dataclass
class Server:
    """One llama.cpp server of a base model, holding a fixed list of adapters."""

    server: Any  # xllamacpp.Server; None until started and once stopped
    adapters: tuple[str, ...]  # adapter keys, in llama.cpp's id order
    users: int = 0
    retired: bool = False
    ready: threading.Event = field(default_factory=threading.Event)  # started, or failed to
    failure: BaseException | None = None  # why it did not start

    def serves(self, adapter: str | None, held: Collection[str]) -> bool:
        """Whether a request of ``adapter`` can run here while the base holds ``held``: the
        server has that adapter and none the base has dropped (evicted, or a deleted model's).
        The order of ``held`` (the LRU's) does not matter: using an adapter must not restart."""
        return (adapter is None or adapter in self.adapters) and set(self.adapters) <= set(held)

    def lora(self, adapter: str | None) -> list[dict[str, Any]]:
        """Every adapter's scale for one request: 1.0 for its own, 0.0 for the rest (all 0.0 for
        the base): llama.cpp applies its global scales to a request without them."""
        return [{"id": i, "scale": 1.0 if key == adapter else 0.0} for i, key in enumerate(self.adapters)]


@dataclass
class Lane:
    """A place requests of a base decode: its current server and what runs on it."""

    index: int
    threads: int
    parallel: int
    current: Server | None = None
    running: Counter[str | None] = field(default_factory=Counter)  # requests per adapter (None: base)
    admitted: int = 0  # requests ever placed here: an idle lane's stop is off if it moved
    idle_timer: threading.Timer | None = None  # the pending stop of an idle one-thread lane

    @property
    def busy(self) -> int:
        return sum(self.running.values())


@dataclass
class Adapter:
    key: str
    path: Path
    gguf: Path
    vocab: Vocab | None  # the adapter's own tokenizer (template), if it carries one


@dataclass
class Base:
    key: str
    path: Path
    gguf: Path
    vocab: Vocab
    slot_context: int
    adapters: OrderedDict[str, Adapter] = field(default_factory=OrderedDict)  # LRU, newest last
    lanes: list[Lane] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def default_lanes(cpus: int) -> int:
    """The wide lane plus one-thread lanes: four per CPU, at most 8 (their KV caches)."""
    return 1 + min(4 * max(1, cpus), 8)


def choose_lane(lanes: list[Lane], adapter: str | None, cap: int) -> int:
    """The index of the lane a request of ``adapter`` should run on; ``len(lanes)``: start one.

    1. the wide lane 0 when no lane runs anything;
    2. an idle one-thread lane, the lowest first;
    3. a new lane, while fewer than ``cap`` exist;
    4. a lane already decoding ``adapter`` with a free slot: the requests batch there;
    5. the least loaded one-thread lane (relative to its slots), the lowest first on a tie; lane 0
       when it is the only one.

    A lane of its own beats batching: on 2 cores a one-thread llama.cpp server decodes two
    requests of one adapter no faster than one (``docs/serving-llamacpp.md``), so a burst spreads
    over the lanes first and batches only once all of them are busy.
    """
    if all(lane.busy == 0 for lane in lanes):
        return 0
    narrow = lanes[1:]
    for lane in narrow:
        if lane.busy == 0:
            return lane.index
    if len(lanes) < max(1, cap):
        return len(lanes)
    for lane in lanes:
        if lane.running[adapter] > 0 and lane.busy < lane.parallel:
            return lane.index
    return min(narrow or lanes, key=lambda lane: (lane.busy / lane.parallel, lane.index)).index


def lane_shape(index: int, *, threads: int, parallel: int, lanes: int) -> tuple[int, int]:
    """Threads and slots of lane ``index``: lane 0 gets all of them, a one-thread lane
    ``parallel // (lanes - 1)`` slots (at least 2, at most ``parallel``)."""
    if index == 0:
        return threads, parallel
    return 1, min(parallel, max(2, parallel // max(1, lanes - 1)))


def start_server(base: Base, lane: Lane, loras: list[Path], *, debug: bool = False) -> Any:
    """A llama.cpp server on the base's GGUF with ``loras`` (scales 0 until a request sets them)."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(base.gguf)
    params.n_parallel = lane.parallel
    params.n_ctx = base.slot_context * lane.parallel
    params.cpuparams.n_threads = lane.threads
    params.cpuparams_batch.n_threads = lane.threads
    params.warmup = False
    params.fit_params = False  # n_ctx is ours; llama.cpp's fitting to memory costs 0.1-0.3 s a start
    params.verbosity = 3 if debug else -1
    params.cache_prompt = False
    params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(p), 0.0) for p in loras]
    server = xllamacpp.Server(params)
    log.info(
        "llama.cpp: started lane %d for %s (%d threads, %d slots, %d adapters)",
        lane.index,
        base.path,
        lane.threads,
        lane.parallel,
        len(loras),
    )
    return server


def stop_server(server: Server) -> None:
    """Drop the last reference: llama.cpp's server stops its loop and frees its memory."""
    server.server = None

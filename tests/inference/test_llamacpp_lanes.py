"""Lanes of the llama.cpp backend: requests of different adapters of one base decode side by side
on separate servers (one server never batches them together), requests of one adapter batch on
one server, and a published adapter's shipped ``adapter.gguf`` is served without converting it.

Progress is judged by the order of events (the second request's tokens against the first one's
end), never by the wall clock. The first request runs long: end-of-turn banned, up to the tiny
model's context. Which lane a request took shows in the lanes the engine started."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from afinar.inference.llamacpp_pool import Lane, choose_lane, default_lanes, lane_shape
from afinar.inference.types import Delta, Event, Failed, Finished, GenerationRequest, SamplingParams
from tests.support.adapters import QUESTION, request

pytest.importorskip("xllamacpp")

LONG = 440  # tokens: the tiny model's 512 positions less the prompt


@pytest.fixture(scope="module")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lanes")


@pytest.fixture(scope="module")
def shipped(models_root: Path, tiny_model_dir: Path, adapters: list[Path]) -> list[Path]:
    """Copies of adapters 0 and 1 that ship their ``adapter.gguf``, as published ones do, and a
    copy of adapter 0 shipping adapter 1's GGUF (which one is served shows in the output)."""
    from afinar.inference.gguf import ADAPTER_GGUF, adapter_gguf

    out = []
    for i in (0, 1):
        dest = models_root / "shipped" / f"a{i}"
        shutil.copytree(adapters[i], dest)
        adapter_gguf(adapters[i], tiny_model_dir, dest / ADAPTER_GGUF)
        out.append(dest)
    swapped = models_root / "shipped" / "a0-with-a1-gguf"
    shutil.copytree(adapters[0], swapped)
    shutil.copyfile(out[1] / ADAPTER_GGUF, swapped / ADAPTER_GGUF)
    return [*out, swapped]


def make_engine(models_root: Path, lanes: int) -> Any:
    from afinar.inference.llamacpp import LlamaCppEngine

    return LlamaCppEngine(
        cache_dir=models_root / "gguf",
        scratch_dir=models_root / f"scratch-{lanes}",
        threads=2,
        parallel=4,
        lanes=lanes,
    )


@pytest.fixture
def converter_calls(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Adapters the engine converts (it still converts them: the list only counts)."""
    from afinar.inference import llamacpp

    calls: list[Path] = []
    convert = llamacpp.adapter_gguf

    def counted(source: Path, base: Path, dest: Path) -> Path:
        calls.append(source)
        return convert(source, base, dest)

    monkeypatch.setattr(llamacpp, "adapter_gguf", counted)
    return calls


def long_request(base: Path, adapter: Path | None, eos: list[int], tokens: int = LONG) -> GenerationRequest:
    """``tokens`` tokens exactly (end-of-turn banned); the base's slots hold its 512 positions."""
    return GenerationRequest(
        base_path=base,
        adapter_path=adapter,
        messages=QUESTION,
        params=SamplingParams(max_tokens=tokens, temperature=0, logit_bias=dict.fromkeys(eos, -100.0)),
        context_length=512,
    )


@pytest.fixture(scope="module")
def eos(tiny_model_dir: Path) -> list[int]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    return sorted({tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")})


class Timeline:
    """Events of several requests in the order they arrived."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Event]] = []
        self.lock = threading.Lock()
        self.first_token = {name: threading.Event() for name in ("a", "b")}
        self.done = {name: threading.Event() for name in ("a", "b")}

    def emit(self, name: str) -> Any:
        def emit(event: Event) -> None:
            with self.lock:
                self.events.append((name, event))
            if isinstance(event, Delta) and event.text:
                self.first_token[name].set()
            if isinstance(event, Finished | Failed):
                self.done[name].set()

        return emit

    def index(self, name: str, kind: type) -> int:
        return next(i for i, (n, e) in enumerate(self.events) if n == name and isinstance(e, kind))

    def before(self, name: str, other: str) -> int:
        """``name``'s deltas that arrived before ``other`` finished."""
        end = self.index(other, Finished)
        return sum(1 for n, e in self.events[:end] if n == name and isinstance(e, Delta))

    def finished(self, name: str) -> Finished:
        event = self.events[self.index(name, Finished | Failed)][1]
        assert isinstance(event, Finished), event
        return event


def a_then_b(engine: Any, a: GenerationRequest, b: GenerationRequest) -> Timeline:
    """Start ``a``; once it streams, start ``b``; both to their end."""
    timeline = Timeline()
    gone = threading.Event()
    engine.submit(a, timeline.emit("a"), gone)
    while not timeline.first_token["a"].wait(0.01):
        assert not timeline.done["a"].is_set(), timeline.events
    engine.submit(b, timeline.emit("b"), gone)
    assert timeline.done["a"].wait(600) and timeline.done["b"].wait(600)
    return timeline


def lanes_of(engine: Any) -> list[Lane]:
    [base] = engine._bases.values()
    return list(base.lanes)


def test_choose_lane() -> None:
    def lane(index: int, parallel: int = 4, **running: int) -> Lane:
        out = Lane(index=index, threads=2 if index == 0 else 1, parallel=parallel)
        out.running.update({None if k == "base" else k: v for k, v in running.items()})
        return out

    assert choose_lane([], "x", cap=3) == 0  # the first request starts the wide lane 0
    assert choose_lane([lane(0), lane(1), lane(2)], "x", cap=3) == 0  # an idle base: lane 0
    # a lane of its own beats batching with its adapter while there is one (idle, or new) ...
    assert choose_lane([lane(0, x=1), lane(1)], "x", cap=3) == 1
    assert choose_lane([lane(0, y=1), lane(1, x=1)], "x", cap=3) == 2
    # ... then it batches with its adapter, wherever that runs with a free slot
    assert choose_lane([lane(0, y=1), lane(1, x=1), lane(2, z=1)], "x", cap=3) == 1
    assert choose_lane([lane(0, x=1), lane(1, y=3), lane(2, z=1)], "x", cap=3) == 0
    assert choose_lane([lane(0, y=1), lane(1, parallel=1, x=1), lane(2, z=2)], "x", cap=3) == 2
    assert choose_lane([lane(0, parallel=1, x=1), lane(1)], "x", cap=3) == 1  # full: an idle lane
    assert choose_lane([lane(0, y=1), lane(1)], "x", cap=3) == 1  # an idle one-thread lane
    # lane 0 takes no new adapter beside busy one-thread lanes: its threads would fight theirs
    assert choose_lane([lane(0), lane(1, y=1)], "x", cap=3) == 2
    assert choose_lane([lane(0), lane(1, y=1), lane(2, z=1)], "x", cap=3) == 1  # least loaded
    assert choose_lane([lane(0, y=1)], "x", cap=3) == 1  # a new lane
    assert choose_lane([lane(0, y=1)], "base", cap=1) == 0  # no more lanes: take turns
    assert choose_lane([lane(0, y=1), lane(1, parallel=2, z=2), lane(2, w=1)], "x", cap=3) == 2
    assert lane_shape(0, threads=8, parallel=8, lanes=5) == (8, 8)
    assert lane_shape(3, threads=8, parallel=8, lanes=5) == (1, 2)
    assert lane_shape(1, threads=2, parallel=4, lanes=2) == (1, 4)
    assert lane_shape(1, threads=2, parallel=1, lanes=2) == (1, 1)
    assert default_lanes(1) == 5 and default_lanes(2) == 9 and default_lanes(16) == 9


def test_different_adapters_progress_together_on_two_lanes(
    models_root: Path, tiny_model_dir: Path, shipped: list[Path], eos: list[int]
) -> None:
    engine = make_engine(models_root, lanes=2)
    try:
        first = long_request(tiny_model_dir, shipped[0], eos)
        second = long_request(tiny_model_dir, shipped[1], eos)
        for adapter in shipped[:2]:  # both adapters loaded: no server swap below
            engine.generate_sync(long_request(tiny_model_dir, adapter, eos, tokens=1), timeout=600)
        timeline = a_then_b(engine, first, second)
        assert timeline.before("b", "a") > 0  # b did not wait for a
        assert timeline.finished("a").completion_tokens == timeline.finished("b").completion_tokens == LONG
        # a on lane 0 (all threads), b on a second lane (one thread) started for it
        assert [(lane.threads, lane.parallel) for lane in lanes_of(engine)] == [(2, 4), (1, 4)]
    finally:
        engine.close()


def test_one_lane_serves_different_adapters_in_turns(
    models_root: Path, tiny_model_dir: Path, shipped: list[Path], eos: list[int]
) -> None:
    """lanes=1 is the single server of old: both requests run on it (llama.cpp decodes the two
    adapters' slots in separate steps, never in one batch: the limit lanes lift)."""
    engine = make_engine(models_root, lanes=1)
    try:
        for adapter in shipped[:2]:
            engine.generate_sync(long_request(tiny_model_dir, adapter, eos, tokens=1), timeout=600)
        timeline = a_then_b(
            engine,
            long_request(tiny_model_dir, shipped[0], eos),
            long_request(tiny_model_dir, shipped[1], eos),
        )
        assert timeline.finished("a").completion_tokens == timeline.finished("b").completion_tokens == LONG
        assert [(lane.threads, lane.parallel) for lane in lanes_of(engine)] == [(2, 4)]
    finally:
        engine.close()


def test_same_adapter_batches_on_one_server_and_shipped_ggufs_are_not_converted(
    models_root: Path, tiny_model_dir: Path, shipped: list[Path], eos: list[int], converter_calls: list[Path]
) -> None:
    """Requests of one adapter on one server decode in the same steps (unlike two adapters'
    above); which lane a request takes is ``test_choose_lane``'s."""
    engine = make_engine(models_root, lanes=1)
    try:
        timeline = a_then_b(
            engine,
            long_request(tiny_model_dir, shipped[0], eos),
            long_request(tiny_model_dir, shipped[0], eos),
        )
        assert timeline.before("b", "a") > 0  # they batch
        assert len(lanes_of(engine)) == 1

        def greedy(adapter: Path | None) -> str:
            result = engine.generate_sync(long_request(tiny_model_dir, adapter, eos, tokens=8), 600)
            return str(result.choices[0].text)

        # adapter 0's files with adapter 1's GGUF answer as adapter 1: the shipped GGUF is served
        assert greedy(shipped[2]) == greedy(shipped[1]) != greedy(shipped[0])
        assert greedy(shipped[0]) != greedy(None)
        assert converter_calls == []
    finally:
        engine.close()


def test_an_adapter_without_a_gguf_is_converted_on_first_use(
    models_root: Path, tiny_model_dir: Path, adapters: list[Path], converter_calls: list[Path]
) -> None:
    engine = make_engine(models_root, lanes=2)
    try:
        for _ in range(2):
            engine.generate_sync(request(tiny_model_dir, adapters[2], max_tokens=2), timeout=600)
        assert converter_calls == [adapters[2]]  # once
    finally:
        engine.close()


@pytest.fixture
def warm_engine(models_root: Path) -> Iterator[Any]:
    engine = make_engine(models_root, lanes=2)
    yield engine
    engine.close()


def test_warm_starts_lane_zero(warm_engine: Any, tiny_model_dir: Path) -> None:
    warm_engine.warm(tiny_model_dir, 512).join(600)
    [lane] = lanes_of(warm_engine)
    assert lane.index == 0 and lane.current is not None and lane.current.server is not None
    result = warm_engine.generate_sync(request(tiny_model_dir, max_tokens=2), timeout=600)
    assert result.completion_tokens == 2 and len(lanes_of(warm_engine)) == 1


@pytest.fixture
def server_starts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(lane, adapters) of each llama.cpp server the engine starts (it still starts them)."""
    from afinar.inference import llamacpp

    starts: list[tuple[int, int]] = []
    start = llamacpp.start_server

    def counted(base: Any, lane: Lane, loras: list[Path], **kwargs: Any) -> Any:
        starts.append((lane.index, len(loras)))
        return start(base, lane, loras, **kwargs)

    monkeypatch.setattr(llamacpp, "start_server", counted)
    return starts


def test_using_adapters_in_any_order_never_restarts_a_server(
    models_root: Path, tiny_model_dir: Path, shipped: list[Path], server_starts: list[tuple[int, int]]
) -> None:
    """The base's adapters are an LRU, reordered by every use; a server holding them all serves
    each of them, whatever the order (a restart costs the caller a second or more). A deleted
    model's adapter is dropped: the next request gets a server without it."""
    engine = make_engine(models_root, lanes=1)
    try:
        for adapter in (shipped[0], shipped[1], shipped[0], None, shipped[1], shipped[0], None):
            result = engine.generate_sync(request(tiny_model_dir, adapter, max_tokens=2), timeout=600)
            assert result.completion_tokens == 2
        assert server_starts == [(0, 1), (0, 2)]  # the first adapter, then both: nothing more
        assert engine.unload(shipped[0])
        engine.generate_sync(request(tiny_model_dir, shipped[1], max_tokens=2), timeout=600)
        assert server_starts == [(0, 1), (0, 2), (0, 1)]
        [lane] = lanes_of(engine)
        assert lane.current is not None and len(lane.current.adapters) == 1
    finally:
        engine.close()


@pytest.mark.parametrize("idle_s", [0, 0.2])
def test_an_idle_one_thread_lane_stops_and_starts_again(
    models_root: Path, tiny_model_dir: Path, shipped: list[Path], eos: list[int], idle_s: float
) -> None:
    """A one-thread lane's server stops once it has had no work for ``lane_idle_s`` (at once for
    0; its KV cache is memory); the wide lane 0 stays, and the next burst starts the lane again."""
    from afinar.inference.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine(
        cache_dir=models_root / "gguf",
        scratch_dir=models_root / f"scratch-idle-{idle_s}",
        threads=2,
        parallel=4,
        lanes=2,
        lane_idle_s=idle_s,
    )
    try:
        for adapter in shipped[:2]:
            engine.generate_sync(long_request(tiny_model_dir, adapter, eos, tokens=1), timeout=600)
        for _ in range(2):
            admitted = lanes_of(engine)[-1].admitted if len(lanes_of(engine)) > 1 else 0
            timeline = a_then_b(
                engine,
                long_request(tiny_model_dir, shipped[0], eos),
                long_request(tiny_model_dir, shipped[1], eos, tokens=64),
            )
            assert timeline.finished("b").completion_tokens == 64
            wide, narrow = lanes_of(engine)
            assert narrow.admitted == admitted + 1  # b ran on the one-thread lane
            # the request leaves its lane just after its last event, the stop follows: wait, boundedly
            for _ in range(6000):
                if narrow.current is None:
                    break
                threading.Event().wait(0.01)
            assert narrow.current is None and narrow.busy == 0
            assert wide.current is not None and wide.current.server is not None
    finally:
        engine.close()


def test_a_starting_lane_holds_up_no_request_of_the_running_ones(
    models_root: Path,
    tiny_model_dir: Path,
    shipped: list[Path],
    eos: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server starts outside the base's lock: while lane 1's start is held back, a request
    that batches on the running lane 0 is admitted and answered; the held request follows."""
    from afinar.inference import llamacpp

    gate = threading.Event()
    start = llamacpp.start_server

    def held_for_lane_one(base: Any, lane: Lane, loras: list[Path], **kwargs: Any) -> Any:
        if lane.index == 1:
            assert gate.wait(600)
        return start(base, lane, loras, **kwargs)

    monkeypatch.setattr(llamacpp, "start_server", held_for_lane_one)
    engine = make_engine(models_root, lanes=2)
    try:
        for adapter in shipped[:2]:  # lane 0 holds both adapters
            engine.generate_sync(long_request(tiny_model_dir, adapter, eos, tokens=1), timeout=600)
        timeline = Timeline()
        gone = threading.Event()
        engine.submit(long_request(tiny_model_dir, shipped[0], eos), timeline.emit("a"), gone)
        assert timeline.first_token["a"].wait(600)
        engine.submit(long_request(tiny_model_dir, shipped[1], eos, tokens=4), timeline.emit("b"), gone)
        for _ in range(6000):  # b has taken lane 1, whose start waits for the gate
            if len(lanes_of(engine)) == 2 and lanes_of(engine)[1].busy:
                break
            threading.Event().wait(0.01)
        assert lanes_of(engine)[1].busy == 1
        # lane 1 is busy and the cap reached: the same adapter as a's joins a on lane 0
        third = engine.generate_sync(long_request(tiny_model_dir, shipped[0], eos, tokens=4), timeout=120)
        assert third.completion_tokens == 4 and not gate.is_set() and not timeline.done["b"].is_set()
        gate.set()
        assert timeline.done["a"].wait(600) and timeline.done["b"].wait(600)
        assert timeline.finished("b").completion_tokens == 4
    finally:
        gate.set()
        engine.close()


def test_a_server_that_fails_to_start_fails_its_request_and_the_next_starts_another(
    models_root: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from afinar.errors import ServerError
    from afinar.inference import llamacpp

    start = llamacpp.start_server
    failures = [RuntimeError("Failed to init server, please check the input params.")]

    def fails_once(base: Any, lane: Lane, loras: list[Path], **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return start(base, lane, loras, **kwargs)

    monkeypatch.setattr(llamacpp, "start_server", fails_once)
    engine = make_engine(models_root, lanes=2)
    try:
        with pytest.raises(ServerError, match=r"Starting llama\.cpp failed: Failed to init server"):
            engine.generate_sync(request(tiny_model_dir, max_tokens=2), timeout=600)
        [lane] = lanes_of(engine)
        assert lane.current is None and lane.busy == 0
        assert engine.generate_sync(request(tiny_model_dir, max_tokens=2), timeout=600).completion_tokens == 2
    finally:
        engine.close()

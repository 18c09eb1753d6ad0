"""The vLLM backend's use of vLLM 0.11.0's run-time LoRA endpoints, against a double that answers
as that version does (tests/support/vllm_double.py says where each answer comes from): adapters
load on first use, are reused, unload least recently used first and on delete, survive a second
load by another node or a server restart, and a path the server cannot read is an error."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from afinar.errors import InvalidRequest, ServerError
from afinar.inference.openai_http import OpenAIHTTPEngine
from afinar.inference.types import Delta, Event, Finished, GenerationRequest, SamplingParams, Started
from afinar.inference.vllm_adapters import adapter_name
from tests.support.vllm_double import BASE, PROMPT_TOKENS, VLLMDouble, vllm_double

LOAD, UNLOAD, CHAT = "/v1/load_lora_adapter", "/v1/unload_lora_adapter", "/v1/chat/completions"
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture
def double() -> Iterator[VLLMDouble]:
    with vllm_double() as d:
        yield d


def adapter(root: Path, name: str) -> Path:
    """A directory with a PEFT adapter's files (only the config matters to the double)."""
    path = root / name
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 8}')
    (path / "adapter_model.safetensors").write_bytes(b"weights of " + name.encode())
    return path


def ask(adapter_path: Path | None = None) -> GenerationRequest:
    return GenerationRequest(
        base_path=Path("/models") / BASE, adapter_path=adapter_path, messages=HELLO, params=SamplingParams()
    )


@contextmanager
def engine_for(double: VLLMDouble, **kwargs: object) -> Iterator[OpenAIHTTPEngine]:
    eng = OpenAIHTTPEngine(double.url, timeout=10, **kwargs)  # type: ignore[arg-type]
    try:
        yield eng
    finally:
        eng.close()


def test_an_adapter_loads_on_first_use_and_is_then_reused(double: VLLMDouble, tmp_path: Path) -> None:
    a = adapter(tmp_path, "a")
    with engine_for(double) as engine:
        first = engine.generate_sync(ask(a))
        second = engine.generate_sync(ask(a))
        name = adapter_name(a)
        assert double.calls(LOAD) == [{"lora_name": name, "lora_path": str(a.resolve())}]
        assert [body["model"] for body in double.calls(CHAT)] == [name, name]
        assert first.choices[0].text == second.choices[0].text == f"Hello from {name}"
        assert engine.loaded_adapters() == [a]
        base = engine.generate_sync(ask())  # the base by its served name, no adapter involved
        assert double.calls(CHAT)[-1]["model"] == BASE and base.choices[0].text == f"Hello from {BASE}"
        assert base.prompt_tokens == PROMPT_TOKENS and base.choices[0].completion_tokens == 3


def test_least_recently_used_adapters_are_unloaded_beyond_the_bound(
    double: VLLMDouble, tmp_path: Path
) -> None:
    a, b, c = (adapter(tmp_path, n) for n in "abc")
    with engine_for(double, adapter_cache_size=2) as engine:
        for path in (a, b, a, c):  # a used again after b: b is the least recently used
            engine.generate_sync(ask(path))
        assert double.calls(UNLOAD) == [{"lora_name": adapter_name(b)}]
        assert set(double.loras) == {adapter_name(a), adapter_name(c)}
        assert engine.loaded_adapters() == [a, c]
        engine.generate_sync(ask(b))  # back again: loaded again, a goes
        assert double.calls(UNLOAD)[-1] == {"lora_name": adapter_name(a)}
        assert len(double.calls(LOAD)) == 4


def test_a_failed_unload_does_not_fail_the_request_that_evicted(double: VLLMDouble, tmp_path: Path) -> None:
    a, b = adapter(tmp_path, "a"), adapter(tmp_path, "b")
    double.broken_unloads = True
    with engine_for(double, adapter_cache_size=1) as engine:
        engine.generate_sync(ask(a))
        assert engine.generate_sync(ask(b)).choices[0].text.endswith(adapter_name(b))
        assert engine.loaded_adapters() == [b]  # a is forgotten here; the server may keep it
        assert double.calls(UNLOAD) == [{"lora_name": adapter_name(a)}]


def test_deleting_a_model_unloads_its_adapter_once_no_request_uses_it(
    double: VLLMDouble, tmp_path: Path
) -> None:
    a = adapter(tmp_path, "a")
    with engine_for(double) as engine:
        engine.generate_sync(ask(a))
        assert engine.unload(a) is True
        assert double.calls(UNLOAD) == [{"lora_name": adapter_name(a)}] and not double.loras
        assert engine.unload(a) is False and engine.loaded_adapters() == []
        pool = engine.adapters  # a request in flight keeps it until it ends
        name = pool.acquire(a)
        assert engine.unload(a) is True and name in double.loras
        pool.release(name)
        assert name not in double.loras and len(double.calls(UNLOAD)) == 2


def test_a_request_cancelled_while_its_adapter_loads_does_not_pin_it(
    double: VLLMDouble, tmp_path: Path
) -> None:
    a, b = adapter(tmp_path, "a"), adapter(tmp_path, "b")
    double.load_gate = threading.Event()
    with engine_for(double, adapter_cache_size=1) as engine:

        async def cancel_during_load() -> None:
            task = asyncio.create_task(engine.generate(ask(a)))
            while not double.loads_waiting and not task.done():  # the load is under way
                await asyncio.sleep(0.02)
            task.cancel()
            double.load_gate.set()  # type: ignore[union-attr]
            with pytest.raises(asyncio.CancelledError):
                await task
            pins = engine.adapters._loaded  # the pool's entries: the load ends, then the pin goes
            for _ in range(500):
                if adapter_name(a) in pins and not pins[adapter_name(a)].users:
                    return
                await asyncio.sleep(0.02)
            raise AssertionError("the cancelled request's pin was never released")

        asyncio.run(cancel_during_load())
        engine.generate_sync(ask(b))  # a bound of one: a can go, as nobody uses it
        assert double.calls(UNLOAD) == [{"lora_name": adapter_name(a)}]


def test_a_second_load_of_a_loaded_name_is_not_an_error(double: VLLMDouble, tmp_path: Path) -> None:
    """Another Afinar node (or this one before a restart) loaded the same adapter path."""
    a = adapter(tmp_path, "a")
    double.loras[adapter_name(a)] = str(a)
    with engine_for(double) as engine:
        result = engine.generate_sync(ask(a))
    assert result.choices[0].text.endswith(adapter_name(a))
    assert len(double.calls(LOAD)) == 1  # answered 400 "already been loaded": taken as loaded


def test_an_adapter_the_server_forgot_is_loaded_again(double: VLLMDouble, tmp_path: Path) -> None:
    a = adapter(tmp_path, "a")
    with engine_for(double) as engine:
        engine.generate_sync(ask(a))
        double.restart()
        result = engine.generate_sync(ask(a))  # 404 "does not exist" -> load again -> retry
        assert result.choices[0].text.endswith(adapter_name(a))
        assert len(double.calls(LOAD)) == 2 and len(double.calls(CHAT)) == 3
        double.restart()
        events = asyncio.run(collect(engine, ask(a)))  # the streaming path retries as well
        assert "".join(e.text for e in events if isinstance(e, Delta)).endswith(adapter_name(a))


def test_a_path_the_server_cannot_read_is_an_error(double: VLLMDouble, tmp_path: Path) -> None:
    """The shared directory is mounted elsewhere on the vLLM node than configured."""
    a = adapter(tmp_path / "models", "a")
    shared = tmp_path / "shared"
    with engine_for(double, adapter_dir=shared, adapter_dir_remote="/mnt/not-mounted") as engine:
        with pytest.raises(ServerError, match="No adapter found"):
            engine.generate_sync(ask(a))
        assert double.calls(LOAD)[0]["lora_path"] == f"/mnt/not-mounted/{adapter_name(a)}"
        assert not double.loras and engine.loaded_adapters() == []
        assert list(shared.iterdir()) == []  # its plaintext copy is not left behind


def test_sealed_adapters_are_written_to_the_shared_directory_while_loaded(
    double: VLLMDouble, tmp_path: Path
) -> None:
    plain = adapter(tmp_path / "decrypted", "a")
    sealed = tmp_path / "blobs" / "a"  # not a directory: only the opener can read it
    opened: list[Path] = []

    @contextmanager
    def opener(path: Path) -> Iterator[Path]:
        opened.append(path)
        yield plain

    shared = tmp_path / "shared"
    with engine_for(double, adapter_dir=shared, opener=opener) as engine:
        engine.generate_sync(ask(sealed))
        copy = shared / adapter_name(sealed)
        assert opened == [sealed] and double.loras == {adapter_name(sealed): str(copy.resolve())}
        assert (copy / "adapter_model.safetensors").read_bytes() == b"weights of a"
        engine.unload(sealed)
        assert not copy.exists()


def test_sealed_adapters_need_a_shared_directory_and_full_models_are_refused(
    double: VLLMDouble, tmp_path: Path
) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "config.json").write_text("{}")
    with engine_for(double) as engine:
        with pytest.raises(ServerError, match="AFINAR_VLLM_ADAPTER_DIR"):
            engine.generate_sync(ask(tmp_path / "sealed"))
        with pytest.raises(InvalidRequest, match="Full fine-tunes"):
            engine.generate_sync(ask(full))
    assert double.calls(LOAD) == []


async def collect(engine: OpenAIHTTPEngine, request: GenerationRequest) -> list[Event]:
    return [event async for event in engine.stream(request)]


def test_streaming_starts_with_the_prompt_count_of_the_first_chunk(double: VLLMDouble) -> None:
    with engine_for(double) as engine:
        events = asyncio.run(collect(engine, ask()))
    assert events[0] == Started(PROMPT_TOKENS)  # continuous usage: known before any text
    assert [e.text for e in events if isinstance(e, Delta)] == ["Hello", " from", f" {BASE}"]
    assert events[-1] == Finished(0, "stop", 3)
    body = double.calls(CHAT)[0]
    assert body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}


def test_the_vllm_backend_is_built_from_settings(double: VLLMDouble, tmp_path: Path) -> None:
    from afinar.config import Settings
    from afinar.inference.backends import build_engine, resolve_backend

    settings = Settings(
        data_dir=tmp_path / "data",
        inference_backend="auto",
        vllm_url=double.url + "/v1",
        vllm_api_key="sk-vllm",  # type: ignore[arg-type]
        vllm_served_models={"my-base-dir": BASE},
        vllm_adapter_dir=tmp_path / "shared",
        adapter_cache_size=1,
    )
    assert resolve_backend(settings) == "vllm"  # a vLLM URL is enough for auto
    engine = build_engine(settings)
    assert isinstance(engine, OpenAIHTTPEngine)
    try:
        a, b = adapter(tmp_path, "a"), adapter(tmp_path, "b")
        request = GenerationRequest(base_path=tmp_path / "my-base-dir", messages=HELLO, adapter_path=a)
        assert engine.generate_sync(request).prompt_tokens == PROMPT_TOKENS
        engine.generate_sync(
            GenerationRequest(base_path=tmp_path / "my-base-dir", messages=HELLO, adapter_path=b)
        )
        assert double.calls(UNLOAD) == [{"lora_name": adapter_name(a)}]  # a bound of one
        assert double.calls(LOAD)[0]["lora_path"] == str((tmp_path / "shared" / adapter_name(a)).resolve())
        assert double.authorizations == {"Bearer sk-vllm"}
    finally:
        engine.close()
    assert double.loras == {} and list((tmp_path / "shared").iterdir()) == []  # closed: nothing left

"""The llama.cpp backend on the tiny model converted to GGUF: the engine protocol, adapters per
request (two at once), and the chat API over it; one slow test on the bundled model.

The tiny base is converted once per session; each adapter once per engine (a few seconds each:
llama.cpp's converter runs in a child Python process)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from afinar.inference import grammar
from afinar.inference.types import Delta, Finished, GenerationRequest, Started
from tests.support.adapters import request

pytest.importorskip("xllamacpp")

QUESTION = [{"role": "user", "content": "Which wheels should I buy for street skating?"}]


@pytest.fixture(scope="module")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the module's GGUF conversions are cached (``<models_dir>/gguf``)."""
    return tmp_path_factory.mktemp("llamacpp")


@pytest.fixture(scope="module")
def llama(models_root: Path) -> Iterator[Any]:
    from afinar.inference.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine(
        cache_dir=models_root / "gguf", scratch_dir=models_root / "scratch", threads=2, parallel=4
    )
    yield engine
    engine.close()


def greedy(engine: Any, base: Path, adapter: Path | None = None, **params: Any) -> str:
    result = engine.generate_sync(request(base, adapter, max_tokens=8, temperature=0, **params), timeout=600)
    return str(result.choices[0].text)


def test_non_stream_and_stream_agree_with_usage(llama: Any, tiny_model_dir: Path) -> None:
    req = request(tiny_model_dir, max_tokens=6, temperature=0)
    result = llama.generate_sync(req, timeout=600)
    assert result.prompt_tokens > 10 and result.completion_tokens == 6
    assert result.choices[0].finish_reason == "length"

    async def events() -> list[Any]:
        return [e async for e in llama.stream(req)]

    streamed = asyncio.run(events())
    assert isinstance(streamed[0], Started) and streamed[0].prompt_tokens == result.prompt_tokens
    assert "".join(e.text for e in streamed if isinstance(e, Delta)) == result.choices[0].text
    assert streamed[-1] == Finished(0, "length", 6)


def test_stop_n_seed_and_logprobs(llama: Any, tiny_model_dir: Path) -> None:
    text = (
        llama.generate_sync(request(tiny_model_dir, max_tokens=12, temperature=0), timeout=600)
        .choices[0]
        .text
    )
    stop = text[2:4]
    assert len(stop) == 2
    cut = llama.generate_sync(
        request(tiny_model_dir, max_tokens=12, temperature=0, stop=(stop,)), timeout=600
    )
    assert cut.choices[0].text == text[: text.index(stop)] and cut.choices[0].finish_reason == "stop"

    sampled = request(tiny_model_dir, max_tokens=5, temperature=1.0, n=2, seed=7)
    one, two = llama.generate_sync(sampled, timeout=600), llama.generate_sync(sampled, timeout=600)
    assert [c.text for c in one.choices] == [c.text for c in two.choices]  # the seed holds
    assert len(one.choices) == 2 and one.completion_tokens == 10

    # Greedy text of whole characters (the tiny model's samples may split UTF-8 characters, whose
    # partial tokens llama.cpp reports no logprob for: docs/api.md).
    scored = request(tiny_model_dir, max_tokens=5, temperature=0, logprobs=True, top_logprobs=2)
    choice = llama.generate_sync(scored, timeout=600).choices[0]
    assert choice.logprobs is not None and len(choice.logprobs) == 5
    assert "".join(t.token for t in choice.logprobs) == choice.text
    for t in choice.logprobs:
        assert len(t.top_logprobs) == 2 and t.top_logprobs[0].token == t.token
        assert t.logprob == pytest.approx(t.top_logprobs[0].logprob) and t.logprob <= 0


def test_adapters_per_request_and_at_once(llama: Any, tiny_model_dir: Path, adapters: list[Path]) -> None:
    base = greedy(llama, tiny_model_dir)
    first = greedy(llama, tiny_model_dir, adapters[0])  # converted on first use, server replaced
    second = greedy(llama, tiny_model_dir, adapters[1])
    assert first != base and second != base and first != second
    assert greedy(llama, tiny_model_dir) == base  # explicit zero scales: the base again

    async def together() -> list[str]:
        reqs = [
            request(tiny_model_dir, a, max_tokens=8, temperature=0) for a in (adapters[0], adapters[1], None)
        ]
        results = await asyncio.gather(*(llama.generate(r) for r in reqs))
        return [r.choices[0].text for r in results]

    assert asyncio.run(together()) == [first, second, base]
    assert {str(p) for p in llama.loaded_adapters()} >= {str(adapters[0]), str(adapters[1])}
    assert llama.unload(adapters[1]) and str(adapters[1]) not in {str(p) for p in llama.loaded_adapters()}
    assert greedy(llama, tiny_model_dir, adapters[0]) == first


def test_same_greedy_tokens_as_the_builtin_engine(
    llama: Any, tiny_model_dir: Path, adapters: list[Path], engine: Any
) -> None:
    """f16 llama.cpp and fp32 transformers agree on the tiny model, with and without an adapter
    (same prompt ids, same template, same LoRA maths)."""
    for adapter in (None, adapters[0]):
        ours = engine.generate_sync(
            request(tiny_model_dir, adapter, max_tokens=6, temperature=0), timeout=600
        )
        theirs = llama.generate_sync(
            request(tiny_model_dir, adapter, max_tokens=6, temperature=0), timeout=600
        )
        assert theirs.prompt_tokens == ours.prompt_tokens
        assert theirs.choices[0].text == ours.choices[0].text


def test_json_schema_constraint_is_enforced(llama: Any, tiny_model_dir: Path) -> None:
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "size": {"enum": ["small", "large"]}},
        "required": ["ok", "size"],
        "additionalProperties": False,
    }
    req = GenerationRequest(
        base_path=tiny_model_dir,
        messages=QUESTION,
        context_length=256,
        response_prefix="{",
        constraint=grammar.json_constraint(schema),
    )
    result = llama.generate_sync(req, timeout=600)
    text = result.choices[0].text
    assert text.startswith('{"ok": ') and result.choices[0].finish_reason == "stop"
    value = json.loads(text)
    assert isinstance(value["ok"], bool) and value["size"] in ("small", "large")


def test_chat_api_on_llamacpp(models_root: Path, settings: Any) -> None:
    """The OpenAI SDK over the API, the container building the llama.cpp backend from its
    settings: a completion, then SSE chunks with usage (the base GGUF is the module's)."""
    import openai
    from fastapi.testclient import TestClient

    from afinar.inference.llamacpp import LlamaCppEngine
    from afinar.server import create_app
    from afinar.services.container import Container
    from afinar.services.orgs import bootstrap

    settings = settings.model_copy(
        update={"inference_backend": "llamacpp", "models_path": models_root, "llamacpp_threads": 2}
    )
    c = Container(settings)
    assert isinstance(c.engine, LlamaCppEngine)
    c.migrate()
    bootstrap(c.db, settings.default_org_name, settings.bootstrap_api_key)
    with TestClient(create_app(c)) as http:
        client = openai.OpenAI(
            base_url="http://testserver/v1",
            api_key=settings.bootstrap_api_key,
            http_client=http,
            max_retries=0,
        )
        kwargs: dict[str, Any] = {
            "model": "tiny-llama",
            "messages": QUESTION,
            "max_tokens": 5,
            "temperature": 0,
        }
        done = client.chat.completions.create(**kwargs)
        assert done.choices[0].finish_reason == "length" and done.usage is not None
        assert done.usage.completion_tokens == 5
        chunks = list(
            client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs)
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == done.choices[0].message.content
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
        assert chunks[-1].usage.prompt_tokens == done.usage.prompt_tokens
    c.close()


@pytest.mark.slow
def test_bundled_model_answers_and_ends_its_turn(tmp_path: Path, bundled_models_dir: Path) -> None:
    """The bundled smollm2 (converted to f16 GGUF) answers, streams, and stops at <|im_end|>."""
    from afinar.catalog.bundled import ensure_converted
    from afinar.catalog.registry import Catalog
    from afinar.inference.llamacpp import LlamaCppEngine

    entry = Catalog.load(None).get("smollm2-135m-instruct")
    assert entry is not None
    base = ensure_converted(entry, bundled_models_dir / entry.id)
    engine = LlamaCppEngine(
        cache_dir=bundled_models_dir / "gguf", scratch_dir=tmp_path / "scratch", threads=2
    )
    try:
        messages = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
        req = request(base, None, messages, max_tokens=64, temperature=0)
        result = engine.generate_sync(req, timeout=900)
        assert "Paris" in result.choices[0].text and result.choices[0].finish_reason == "stop"
        assert 0 < result.completion_tokens < 64

        async def events() -> list[Any]:
            return [e async for e in engine.stream(req)]

        streamed = asyncio.run(events())
        assert "".join(e.text for e in streamed if isinstance(e, Delta)) == result.choices[0].text
    finally:
        engine.close()

"""The vLLM backend's HTTP client against a real OpenAI-compatible server: llama.cpp's, from the
``xllamacpp`` wheel, on the bundled model's GGUF (vLLM itself cannot run here; its adapter
endpoints are covered by test_vllm_contract.py). Greedy decoding makes answers repeatable, so
each test compares the client's paths with each other rather than with fixed text."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from afinar.errors import InvalidRequest
from afinar.inference.openai_http import OpenAIHTTPEngine
from afinar.inference.openai_wire import StreamState, request_body
from afinar.inference.types import Delta, Event, Finished, GenerationRequest, SamplingParams, Started
from tests.support.llama_server import BUNDLED, bundled_gguf, llama_server

# A base directory named like the served model: the client finds it by name in GET /v1/models.
BASE = Path("/models") / BUNDLED
QUESTION = [{"role": "user", "content": "List five skateboard parts, one per line."}]


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with llama_server(bundled_gguf(), context=2048, parallel=2, alias=BUNDLED) as url:
        yield url


@pytest.fixture(scope="module")
def engine(server_url: str) -> Iterator[OpenAIHTTPEngine]:
    eng = OpenAIHTTPEngine(server_url, timeout=60)
    yield eng
    eng.close()


def ask(max_tokens: int | None = 12, **params: Any) -> GenerationRequest:
    sampling = SamplingParams(max_tokens=max_tokens, temperature=params.pop("temperature", 0.0), **params)
    return GenerationRequest(base_path=BASE, messages=QUESTION, params=sampling)


def stream_events(engine: OpenAIHTTPEngine, request: GenerationRequest) -> list[Event]:
    async def run() -> list[Event]:
        return [event async for event in engine.stream(request)]

    return asyncio.run(run())


def test_served_name_by_name_or_the_single_base(engine: OpenAIHTTPEngine) -> None:
    assert engine.served_name(BASE) == BUNDLED
    assert engine.served_name(Path("/elsewhere/another-dir")) == BUNDLED  # one base: it serves all


def test_non_streaming_usage_and_max_tokens(engine: OpenAIHTTPEngine) -> None:
    result = engine.generate_sync(ask(max_tokens=12))
    choice = result.choices[0]
    assert choice.finish_reason == "length" and choice.completion_tokens == 12
    assert result.prompt_tokens > 10 and choice.text.strip()
    again = asyncio.run(engine.generate(ask(max_tokens=12)))  # the async path says the same
    assert again.choices[0].text == choice.text and again.prompt_tokens == result.prompt_tokens


def test_stream_says_what_the_completion_says(engine: OpenAIHTTPEngine) -> None:
    whole = engine.generate_sync(ask(max_tokens=10))
    events = stream_events(engine, ask(max_tokens=10))
    assert isinstance(events[0], Started) and events[0].prompt_tokens == whole.prompt_tokens
    deltas = [e for e in events if isinstance(e, Delta)]
    assert len(deltas) > 1  # it arrived in pieces
    assert "".join(d.text for d in deltas) == whole.choices[0].text
    assert events[-1] == Finished(0, "length", 10)
    assert engine.queued() == 0  # nothing left in flight


def test_the_prompt_is_counted_before_the_first_text(engine: OpenAIHTTPEngine, server_url: str) -> None:
    """So text streams as it comes: llama.cpp's timings_per_token (vLLM: continuous usage)."""
    engine.served_name(BASE)
    assert engine.llamacpp  # seen in the server's model listing
    body = request_body(ask(max_tokens=6), BUNDLED, stream=True, llamacpp=True)
    state = StreamState(1, 6)
    counted_at_first_text = None
    with httpx.stream("POST", server_url + "/v1/chat/completions", json=body, timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line.removeprefix("data: "))
                state.read_usage(chunk)
                if state.deltas(chunk, False) and counted_at_first_text is None:
                    counted_at_first_text = state.prompt_tokens
    assert counted_at_first_text == engine.generate_sync(ask(max_tokens=6)).prompt_tokens


def test_stop_sequence_ends_the_reply_before_it(engine: OpenAIHTTPEngine) -> None:
    text = engine.generate_sync(ask(max_tokens=16)).choices[0].text
    middle = len(text) // 2
    stop = text[middle : middle + 3]
    expected = text[: text.index(stop)]
    result = engine.generate_sync(ask(max_tokens=16, stop=(stop,)))
    assert result.choices[0].text == expected
    assert result.choices[0].finish_reason == "stop" and result.choices[0].completion_tokens < 16
    streamed = stream_events(engine, ask(max_tokens=16, stop=(stop,)))
    assert "".join(e.text for e in streamed if isinstance(e, Delta)) == expected


def test_n_choices_with_a_seed_and_logprobs(engine: OpenAIHTTPEngine) -> None:
    request = ask(max_tokens=6, n=2, temperature=1.0, seed=11, logprobs=True, top_logprobs=2)
    result = engine.generate_sync(request)
    assert [c.index for c in result.choices] == [0, 1]
    for choice in result.choices:
        assert choice.finish_reason == "length" and choice.completion_tokens == 6
        assert choice.logprobs is not None and len(choice.logprobs) == 6
        assert all(len(lp.top_logprobs) == 2 and lp.logprob <= 0 for lp in choice.logprobs)
    assert engine.generate_sync(request).choices[0].text == result.choices[0].text  # the seed holds


def test_a_prompt_over_the_context_is_refused_as_openai_does(engine: OpenAIHTTPEngine) -> None:
    long = GenerationRequest(
        base_path=BASE,
        messages=[{"role": "user", "content": "kickflip " * 1500}],
        params=SamplingParams(max_tokens=4),
    )
    with pytest.raises(InvalidRequest) as caught:
        engine.generate_sync(long)
    assert caught.value.code == "context_length_exceeded" and caught.value.param == "messages"
    with pytest.raises(InvalidRequest):
        stream_events(engine, long)  # refused before Started


@pytest.fixture
def container(settings: Any, engine: OpenAIHTTPEngine) -> Iterator[Any]:
    """Afinar serving the tiny catalogue's model through the HTTP backend (the server's one base)."""
    from afinar.services.container import Container
    from afinar.services.orgs import bootstrap

    c = Container(settings, engine=engine)
    c.migrate()
    bootstrap(c.db, settings.default_org_name, settings.bootstrap_api_key)
    yield c
    c.db.dispose()  # the module's engine outlives this container


def test_the_openai_sdk_through_afinar_on_the_http_backend(client: openai.OpenAI) -> None:
    model = "tiny-llama"
    r = client.chat.completions.create(model=model, messages=QUESTION, max_tokens=7, temperature=0)  # type: ignore[arg-type]
    assert r.usage is not None and r.usage.completion_tokens == 7 and r.choices[0].finish_reason == "length"
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=QUESTION,  # type: ignore[arg-type]
            max_tokens=7,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == r.choices[0].message.content
    usage = chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (r.usage.prompt_tokens, 7)

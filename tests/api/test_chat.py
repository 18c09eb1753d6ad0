"""Chat completions through the official SDK, in-process: on the tiny model where the answer
matters, on the echo engine where only the wire does (and on a scripted engine)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from afinar.errors import RateLimited, ServerError
from afinar.inference.engine import collect
from afinar.inference.types import Delta, Event, Finished, GenerationRequest, GenerationResult, Started
from tests.support.echo_engine import EchoEngine

MODEL = "tiny-llama"
HELLO = [{"role": "user", "content": "Which wheels should I buy?"}]
EOS_ID = "2"  # <|im_end|> in the tiny tokenizer
NO_EOS = {"logit_bias": {EOS_ID: -100}}
ECHO = pytest.mark.parametrize("engine", ["echo"], indirect=True)  # the wire only: no model needed


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> EchoEngine | None:
    """None: the built-in engine on the tiny model; ``@ECHO``: the echo engine."""
    return EchoEngine() if getattr(request, "param", None) == "echo" else None


@pytest.fixture
def container(settings: Any, engine: EchoEngine | None) -> Iterator[Any]:
    from afinar.services.container import Container
    from afinar.services.orgs import bootstrap

    c = Container(settings, engine=engine)
    c.migrate()
    bootstrap(c.db, settings.default_org_name, settings.bootstrap_api_key)
    yield c
    c.close()


def sse(http: Any, key: str, **body: Any) -> list[Any]:
    """POST with stream=true and return the parsed ``data:`` payloads (``[DONE]`` kept as a string)."""
    r = http.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": HELLO, "stream": True, **body},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    out: list[Any] = []
    for block in r.text.split("\n\n"):
        if block.startswith("data: "):
            data = block.removeprefix("data: ")
            out.append(data if data == "[DONE]" else json.loads(data))
        else:
            assert block == "", block
    return out


def test_create_non_streaming(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=5, temperature=0, **NO_EOS)
    ChatCompletion.model_validate(r.model_dump())
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion" and r.model == MODEL
    choice = r.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason == "length" and choice.logprobs is None
    assert r.usage is not None and r.usage.completion_tokens == 5 and r.usage.prompt_tokens > 10
    assert r.usage.total_tokens == r.usage.prompt_tokens + 5
    again = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=5, temperature=0, **NO_EOS)
    assert again.choices[0].message.content == choice.message.content


def test_n_seed_and_logprobs(client: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "messages": HELLO,
        "max_completion_tokens": 4,
        "n": 2,
        "seed": 11,
        "logprobs": True,
        "top_logprobs": 2,
        **NO_EOS,
    }
    r = client.chat.completions.create(**kwargs)
    assert [c.index for c in r.choices] == [0, 1]
    assert r.usage is not None and r.usage.completion_tokens == 8
    for c in r.choices:
        assert c.logprobs is not None and c.logprobs.content is not None and len(c.logprobs.content) == 4
        entry = c.logprobs.content[0]
        assert entry.logprob <= 0 and isinstance(entry.bytes, list) and len(entry.top_logprobs) == 2
    same = client.chat.completions.create(**kwargs)
    assert [c.message.content for c in same.choices] == [c.message.content for c in r.choices]


def test_json_object_reply_starts_with_brace(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Answer in JSON."}],
        max_tokens=3,
        response_format={"type": "json_object"},
        **NO_EOS,
    )
    assert (r.choices[0].message.content or "").startswith("{")
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=HELLO, response_format={"type": "json_object"})
    assert err.value.param == "messages"


def test_stream_helper(client: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "messages": HELLO,
        "temperature": 1.0,
        "seed": 4,
        "max_tokens": 16,
        **NO_EOS,
    }
    full = client.chat.completions.create(**kwargs).choices[0].message.content or ""
    starts = [i for i in range(2, len(full) - 2) if "\ufffd" not in full[i : i + 2]]
    stop = full[starts[0] : starts[0] + 2]
    with client.chat.completions.stream(**kwargs, stop=stop) as stream:
        text = "".join(e.delta for e in stream if e.type == "content.delta")
        final = stream.get_final_completion()  # raises on finish_reason "length", hence the stop
    assert text == full[: full.find(stop)] == final.choices[0].message.content
    assert final.choices[0].finish_reason == "stop"


@ECHO
def test_stream_wire_format_without_usage(http: Any, settings: Any) -> None:
    events = sse(http, settings.bootstrap_api_key, max_tokens=3, **NO_EOS)
    assert events[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate(e) for e in events[:-1]]
    assert all("usage" not in e for e in events[:-1])
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    last = chunks[-1].choices[0]
    assert last.finish_reason == "length" and last.delta.content is None and last.delta.role is None
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])


@ECHO
def test_stream_include_usage(http: Any, settings: Any) -> None:
    events = sse(
        http, settings.bootstrap_api_key, max_tokens=3, n=2, stream_options={"include_usage": True}, **NO_EOS
    )
    assert events[-1] == "[DONE]"
    *normal, usage_chunk = [ChatCompletionChunk.model_validate(e) for e in events[:-1]]
    assert all("usage" in e and e["usage"] is None for e in events[:-2])
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == 6 and usage_chunk.usage.prompt_tokens > 0
    assert {c.choices[0].index for c in normal} == {0, 1}


@ECHO
def test_async_client_create_and_stream(app: Any, settings: Any) -> None:
    async def main() -> tuple[str, str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            client = openai.AsyncOpenAI(
                base_url="http://testserver/v1",
                api_key=settings.bootstrap_api_key,
                http_client=http,
                max_retries=0,
            )
            r = await client.chat.completions.create(
                model=MODEL, messages=HELLO, max_tokens=4, temperature=0, **NO_EOS
            )
            stream = await client.chat.completions.create(
                model=MODEL, messages=HELLO, max_tokens=4, temperature=0, stream=True, **NO_EOS
            )
            pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            return r.choices[0].message.content or "", "".join(pieces)

    whole, streamed = asyncio.run(main())
    assert whole == streamed


@ECHO
def test_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="no-such-model", messages=HELLO)
    assert err.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=HELLO, stream=True)
    image = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
            ],
        }
    ]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=image)  # type: ignore[arg-type]
    assert "text-only" in err.value.message and err.value.param == "messages[0].content[1]"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=HELLO, temperature=5)
    assert err.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=HELLO, stop=["a", "b", "c", "d", "e"])
    assert err.value.param == "stop"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=100_000)
    assert err.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=HELLO, stream_options={"include_usage": True})
    assert err.value.param == "stream_options"


def test_fine_tuned_adapter_is_served(
    client: openai.OpenAI,
    container: Any,
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from afinar.domain.models import ServableModel
    from tests.support.adapters import make_adapter

    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter", seed=5)
    name = "ft:tiny-llama:default::abcd1234"
    original = container.chat.resolve_servable

    def resolve(org_id: str, model: str) -> ServableModel:
        if model == name:
            return ServableModel(name, MODEL, tiny_model_dir, adapter, org_id, 0)
        return original(org_id, model)

    monkeypatch.setattr(container.chat, "resolve_servable", resolve)
    base = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=6, temperature=0, **NO_EOS)
    tuned = client.chat.completions.create(model=name, messages=HELLO, max_tokens=6, temperature=0, **NO_EOS)
    assert tuned.model == name
    assert tuned.choices[0].message.content != base.choices[0].message.content


# --- a scripted engine for tool calls and failures --------------------------------------------


class ScriptedEngine(EchoEngine):
    """Answers every request with a fixed text, optionally failing before or after the first piece."""

    def __init__(self, text: str, fail_before: Exception | None = None, fail_after: Exception | None = None):
        super().__init__()
        self.text, self.fail_before, self.fail_after = text, fail_before, fail_after

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Event, None]:
        self.requests.append(request)
        if self.fail_before is not None:
            raise self.fail_before
        yield Started(prompt_tokens=7)
        for i in range(request.params.n):
            pieces = [self.text[k : k + 4] for k in range(0, len(self.text), 4)]
            for piece in pieces:
                yield Delta(index=i, text=piece)
                if self.fail_after is not None:
                    raise self.fail_after
            yield Finished(index=i, finish_reason="stop", completion_tokens=len(pieces))

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        return collect([e async for e in self.stream(request)], request.params.n)


TOOLS = [
    {"type": "function", "function": {"name": "get_order", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "refund", "parameters": {"type": "object"}}},
]
CALLS = (
    '<tool_call>\n{"name": "get_order", "arguments": {"id": 42}}\n</tool_call>\n'
    '<tool_call>\n{"name": "refund", "arguments": {"id": 42, "full": true}}\n</tool_call>'
)


def test_tool_calls_non_streaming_and_streaming(client: openai.OpenAI, container: Any) -> None:
    engine = ScriptedEngine(CALLS)
    container._engine = engine
    r = client.chat.completions.create(model=MODEL, messages=HELLO, tools=TOOLS)  # type: ignore[arg-type]
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_order", "refund"]  # type: ignore[union-attr]
    assert json.loads(calls[1].function.arguments) == {"id": 42, "full": True}  # type: ignore[union-attr]
    assert engine.requests[0].tools == TOOLS and r.usage is not None and r.usage.prompt_tokens == 7

    with client.chat.completions.stream(model=MODEL, messages=HELLO, tools=TOOLS) as stream:  # type: ignore[arg-type]
        for _ in stream:
            pass
        final = stream.get_final_completion()
    streamed = final.choices[0]
    assert streamed.finish_reason == "tool_calls"
    assert [c.function.name for c in streamed.message.tool_calls or []] == ["get_order", "refund"]

    client.chat.completions.create(
        model=MODEL,
        messages=HELLO,
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice={"type": "function", "function": {"name": "refund"}},
    )
    assert engine.requests[-1].response_prefix.startswith('<tool_call>\n{"name": "refund"')
    client.chat.completions.create(model=MODEL, messages=HELLO, tools=TOOLS, tool_choice="none")  # type: ignore[arg-type]
    assert engine.requests[-1].tools is None
    r = client.chat.completions.create(
        model=MODEL,
        messages=HELLO,
        tools=TOOLS,  # type: ignore[arg-type]
        parallel_tool_calls=False,
    )
    assert len(r.choices[0].message.tool_calls or []) == 1


def test_busy_engine_is_a_429_before_streaming(client: openai.OpenAI, container: Any) -> None:
    container._engine = ScriptedEngine("", fail_before=RateLimited("busy", retry_after=3))
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    assert err.value.response.headers["retry-after"] == "3"


def test_failure_after_first_byte_is_an_sse_error(client: openai.OpenAI, container: Any) -> None:
    container._engine = ScriptedEngine("hello world", fail_after=ServerError("engine crashed"))
    stream = client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    with pytest.raises(openai.APIError) as err:
        for _ in stream:
            pass
    assert "engine crashed" in err.value.message

"""Tool calls and JSON replies clients can rely on, through the official SDK, on the tiny random model.

Without constraints the random model writes garbage; every valid call and schema-valid JSON
here comes from constrained decoding.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import openai
import pytest

from afinar.inference.types import GenerationRequest
from tests.support.tiny_model import write_catalog

MODEL = "tiny-llama"
ASK: Any = [{"role": "user", "content": "Order 42 arrived damaged; and what does shipping to Portugal cost?"}]
REFUND = {
    "type": "object",
    "properties": {
        "order_id": {"type": "integer", "minimum": 1, "maximum": 9999},
        "reason": {"type": "string", "enum": ["damaged", "late", "wrong item"]},
        "full": {"type": "boolean"},
    },
    "required": ["order_id", "reason"],
    "additionalProperties": False,
}
QUOTE = {
    "type": "object",
    "properties": {
        "country": {"type": "string", "enum": ["PT", "ES", "FR"]},
        "weight_kg": {"type": "integer", "minimum": 0, "maximum": 30},
        "express": {"type": "boolean"},
    },
    "required": ["country", "weight_kg"],
    "additionalProperties": False,
}
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "refund", "parameters": REFUND, "strict": True}},
    {"type": "function", "function": {"name": "shipping_quote", "parameters": QUOTE}},
]
SCHEMAS = {"refund": REFUND, "shipping_quote": QUOTE}
NAMED: Any = {"type": "function", "function": {"name": "shipping_quote"}}


@pytest.fixture(scope="module")
def tiny_catalog(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny model with room for tool definitions in the prompt (its tokenizer is near byte-level)."""
    path = write_catalog(tmp_path_factory.mktemp("catalog") / "catalog.toml", tiny_model_dir, MODEL)
    text = path.read_text()
    assert "context_length = 256" in text
    path.write_text(text.replace("context_length = 256", "context_length = 2048"))
    return path


def valid(schema: Any, value: Any) -> bool:
    return bool(jsonschema_rs.validator_for(schema).is_valid(value))


def assert_tool_calls(choice: Any, names: set[str], *, single: bool) -> list[tuple[str, dict[str, Any]]]:
    assert choice.finish_reason == "tool_calls", choice
    assert not choice.message.content  # None; "" from the SDK's stream accumulator
    calls = choice.message.tool_calls or []
    assert calls and (len(calls) == 1 or not single)
    out = []
    for call in calls:
        assert call.type == "function" and call.id.startswith("call_")
        assert call.function.name in names
        arguments = json.loads(call.function.arguments)
        assert valid(SCHEMAS[call.function.name], arguments), call.function.arguments
        out.append((call.function.name, arguments))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_required_tool_choice_always_gives_valid_calls(client: openai.OpenAI, seed: int) -> None:
    r = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        n=3,
        seed=seed,
        max_tokens=200,
    )
    assert len(r.choices) == 3
    for choice in r.choices:
        assert_tool_calls(choice, set(SCHEMAS), single=True)


def test_required_with_parallel_calls(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        n=2,
        seed=5,
        max_tokens=400,
    )
    assert r.usage is not None
    for choice in r.choices:
        assert_tool_calls(choice, set(SCHEMAS), single=False)


def test_named_function_is_the_one_called(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice=NAMED,
        parallel_tool_calls=False,
        n=2,
        seed=2,
        max_tokens=100,
    )
    for choice in r.choices:
        assert_tool_calls(choice, {"shipping_quote"}, single=True)


def test_streamed_tool_calls_assemble_to_the_same_calls(
    client: openai.OpenAI, http: Any, settings: Any
) -> None:
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "messages": ASK,
        "tools": TOOLS,
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "seed": 7,
        "max_tokens": 200,
    }
    whole = assert_tool_calls(client.chat.completions.create(**kwargs).choices[0], set(SCHEMAS), single=True)
    with client.chat.completions.stream(**kwargs) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert assert_tool_calls(final.choices[0], set(SCHEMAS), single=True) == whole
    # On the wire: no raw <tool_call> text is streamed as content.
    r = http.post(
        "/v1/chat/completions",
        json={**kwargs, "stream": True},
        headers={"Authorization": f"Bearer {settings.bootstrap_api_key}"},
    )
    assert r.status_code == 200 and "<tool_call>" not in r.text and '"finish_reason":"tool_calls"' in r.text


def test_legacy_function_call_by_name(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        functions=[t["function"] for t in TOOLS],
        function_call={"name": "refund"},
        seed=3,
        max_tokens=100,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "function_call" and choice.message.function_call is not None
    assert choice.message.function_call.name == "refund"
    assert valid(REFUND, json.loads(choice.message.function_call.arguments))


def test_strict_json_schema_reply_validates(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "deck": {"type": "string", "enum": ["street", "park", "cruiser"]},
            "width_in": {"type": "integer", "minimum": 7, "maximum": 9},
            "wheels": {
                "type": "array",
                "items": {"type": "integer", "minimum": 78, "maximum": 101},
                "maxItems": 4,
            },
        },
        "required": ["deck", "width_in", "wheels"],
        "additionalProperties": False,
    }
    r = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "board", "schema": schema, "strict": True},
        },
        n=3,
        seed=4,
        max_tokens=150,
    )
    for choice in r.choices:
        assert choice.finish_reason == "stop" and choice.message.tool_calls is None
        assert valid(schema, json.loads(choice.message.content or "")), choice.message.content


def test_json_object_reply_is_an_object(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Answer in JSON."}],
        response_format={"type": "json_object"},
        n=2,
        seed=0,
        max_tokens=300,
    )
    for choice in r.choices:
        assert choice.finish_reason == "stop", choice.message.content
        assert isinstance(json.loads(choice.message.content or ""), dict)


def test_requests_without_constraints_are_unaffected(
    client: openai.OpenAI, container: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Free text, tools on "auto" and "none": no grammar is built, the engine gets no constraint."""
    from afinar.inference.guide import Guide

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an unconstrained request built a grammar")

    monkeypatch.setattr(Guide, "start", refuse)
    seen: list[GenerationRequest] = []
    engine = container.engine
    original = engine.stream

    def spy(request: GenerationRequest) -> Any:
        seen.append(request)
        return original(request)

    monkeypatch.setattr(engine, "stream", spy)
    for extra in ({}, {"tools": TOOLS}, {"tools": TOOLS, "tool_choice": "none"}):
        r = client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            max_tokens=4,
            seed=1,
            logit_bias={"2": -100},
            **extra,
        )
        assert r.choices[0].finish_reason == "length"
    assert len(seen) == 3 and all(s.constraint is None and s.response_prefix == "" for s in seen)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (
            {
                "tools": [
                    TOOLS[0],
                    {"type": "function", "function": {"name": "bad", "parameters": {"type": "nope"}}},
                ],
                "tool_choice": "required",
            },
            "tools[1].function.parameters",
        ),
        (
            {
                "tools": [{"type": "function", "function": {"name": "bad", "parameters": "not a schema"}}],
                "tool_choice": {"type": "function", "function": {"name": "bad"}},
            },
            "tools[0].function.parameters",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "x",
                        "strict": True,
                        "schema": {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}},
                    },
                }
            },
            "response_format.json_schema.schema",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"pattern": "(("}},
                }
            },
            "response_format.json_schema.schema",
        ),
    ],
)
def test_a_schema_that_cannot_be_enforced_is_a_400(
    client: openai.OpenAI, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=5, **extra)
    assert err.value.param == param and err.value.type == "invalid_request_error"

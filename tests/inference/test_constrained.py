"""Constrained decoding on the tiny random Llama: tool-call grammars and JSON schemas.

A random model writes garbage, so every valid tool call or schema-valid JSON it produces here is
the grammar's doing, not the model's.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from afinar.datasets.chat_template import parse_tool_calls, prepare_messages
from afinar.errors import InvalidRequest
from afinar.inference import grammar
from afinar.inference.grammar import FunctionSpec
from afinar.inference.types import Constraint, GenerationRequest, SamplingParams

REFUND = {
    "type": "object",
    "properties": {
        "order_id": {"type": "integer", "minimum": 1, "maximum": 9999},
        "reason": {"enum": ["damaged", "late", "wrong item"]},
        "full": {"type": "boolean"},
    },
    "required": ["order_id", "reason"],
    "additionalProperties": False,
}
QUOTE = {
    "type": "object",
    "properties": {
        "country": {"type": "string", "maxLength": 4},
        "weight_kg": {"type": "integer", "minimum": 0, "maximum": 30},
    },
    "required": ["country", "weight_kg"],
    "additionalProperties": False,
}
FUNCTIONS = (FunctionSpec("refund", REFUND, strict=True), FunctionSpec("shipping_quote", QUOTE, strict=True))
SCHEMAS = {f.name: f.schema for f in FUNCTIONS}
OPEN_CALL = '<tool_call>\n{"name": "'
MESSAGES = [{"role": "user", "content": "My skateboard arrived broken, order 42."}]


def valid(schema: Any, value: Any) -> bool:
    return bool(jsonschema_rs.validator_for(schema).is_valid(value))


def assert_calls(text: str, names: set[str] | None = None, *, single: bool = True) -> list[dict[str, Any]]:
    """``text`` is nothing but tool calls of the known functions with schema-valid arguments."""
    rest, calls = parse_tool_calls(text)
    assert rest == "" and calls, text
    assert len(calls) == 1 or not single
    for call in calls:
        name = call["function"]["name"]
        assert name in (names or SCHEMAS), text
        assert valid(SCHEMAS[name], json.loads(call["function"]["arguments"])), text
    return calls


def generation(
    base: Path, constraint: Constraint | None, prefix: str = "", **params: Any
) -> GenerationRequest:
    return GenerationRequest(
        base_path=base,
        messages=MESSAGES,
        params=SamplingParams(**params),
        context_length=512,
        response_prefix=prefix,
        constraint=constraint,
    )


@pytest.fixture(scope="module")
def vocab(tiny_model_dir: Path) -> Any:
    from afinar.inference.loader import _load_vocab

    return _load_vocab(tiny_model_dir, tiny_model_dir)


# --- grammars ----------------------------------------------------------------------------------


def test_tool_call_grammar_accepts_exactly_what_the_template_renders(vocab: Any) -> None:
    """The grammar's syntax is the chat template's: a rendered call is a complete reply."""
    from afinar.inference.guide import Guide

    calls = [
        {
            "type": "function",
            "function": {"name": "refund", "arguments": '{"order_id": 42, "reason": "late"}'},
        },
        {
            "type": "function",
            "function": {"name": "shipping_quote", "arguments": '{"country": "PT", "weight_kg": 3}'},
        },
    ]
    rendered = prepare_messages([{"role": "assistant", "content": "", "tool_calls": calls}], None, None)
    text = rendered[0]["content"]
    for parallel, expect_done in ((True, False), (False, True)):
        constraint = grammar.tool_call_constraint(FUNCTIONS, parallel=parallel)
        grammar.check(constraint)
        first_call = text if parallel else text.split("\n<tool_call>")[0]
        guide = Guide.start(constraint, vocab, first_call)
        assert guide.matcher.is_accepting() and guide.done is expect_done
    # A wrong argument type, an unknown function, or free text are refused.
    guide = Guide.start(grammar.tool_call_constraint(FUNCTIONS, parallel=False), vocab)
    tokenizer = vocab.guidance
    for bad in (
        '<tool_call>\n{"name": "refund", "arguments": {"order_id": "42"',
        '<tool_call>\n{"name": "ref_',
        "Sure! ",
    ):
        tokens = tokenizer.greedy_tokenize(bad)
        assert guide.copy().matcher.try_consume_tokens(tokens) < len(tokens)


def test_schemas_that_cannot_be_enforced_are_a_400_naming_the_field() -> None:
    with pytest.raises(InvalidRequest) as err:
        grammar.check_schema({"type": "object", "properties": {"a": {"$ref": "#/$defs/nope"}}}, param="p.q")
    assert err.value.param == "p.q" and "nope" in err.value.message
    with pytest.raises(InvalidRequest):
        grammar.check_schema({"type": "string", "pattern": "(("}, param="p")
    with pytest.raises(InvalidRequest):
        grammar.check_schema(["not", "a", "schema"], param="p")
    with pytest.raises(InvalidRequest):  # strict: an unknown format is refused ...
        grammar.check_schema({"type": "string", "format": "shoe-size"}, param="p", strict=True)
    grammar.check_schema(
        {"type": "string", "format": "shoe-size"}, param="p", strict=False
    )  # ... else ignored
    FunctionSpec("noop").check()  # no parameters: arguments are {}


def test_parse_tool_calls_reads_json_not_patterns() -> None:
    args = {"note": "a } and </tool_call> inside", "n": 1}
    text = "<tool_call>\n" + json.dumps({"name": "refund", "arguments": args}) + "\n</tool_call>"
    rest, calls = parse_tool_calls("Here you go: " + text + "\n" + text.replace("refund", "again"))
    assert rest == "Here you go:"
    assert [c["function"]["name"] for c in calls] == ["refund", "again"]
    assert json.loads(calls[0]["function"]["arguments"]) == args
    broken = '<tool_call>\n{"name": "refund", "arguments": {"n": 1}\n</tool_call>'
    assert parse_tool_calls(broken) == (broken, [])
    assert parse_tool_calls("no calls") == ("no calls", [])


# --- the engine --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_forced_tool_calls_are_valid_for_every_choice(engine: Any, tiny_model_dir: Path, seed: int) -> None:
    constraint = grammar.tool_call_constraint(FUNCTIONS, parallel=False)
    result = engine.generate_sync(
        generation(tiny_model_dir, constraint, OPEN_CALL, n=3, seed=seed, max_tokens=200, stop=("e",)),
        timeout=300,
    )
    for choice in result.choices:
        assert choice.finish_reason == "stop" and choice.completion_tokens < 200
        assert_calls(choice.text)  # stop strings do not cut a constrained reply


def test_json_schema_reply_validates_and_ends_with_the_grammar(engine: Any, tiny_model_dir: Path) -> None:
    schema = {
        "type": "object",
        "properties": {
            "size": {"enum": ["S", "M", "L"]},
            "wheels": {
                "type": "array",
                "items": {"type": "integer", "minimum": 50, "maximum": 60},
                "maxItems": 4,
            },
            "in_stock": {"type": "boolean"},
        },
        "required": ["size", "wheels", "in_stock"],
        "additionalProperties": False,
    }
    constraint = grammar.json_constraint(schema)
    result = engine.generate_sync(
        generation(tiny_model_dir, constraint, "{", n=3, seed=3, max_tokens=120, logit_bias={2: -100.0}),
        timeout=300,
    )
    for choice in result.choices:  # EOS is banned by logit_bias, yet the choice ends with its JSON
        assert choice.finish_reason == "stop", choice.text
        assert valid(schema, json.loads(choice.text)), choice.text


def test_max_tokens_cuts_a_constrained_reply_with_length(engine: Any, tiny_model_dir: Path) -> None:
    constraint = grammar.tool_call_constraint(FUNCTIONS, parallel=False)
    result = engine.generate_sync(generation(tiny_model_dir, constraint, OPEN_CALL, max_tokens=3), timeout=60)
    choice = result.choices[0]
    assert choice.finish_reason == "length" and choice.completion_tokens == 3
    assert choice.text.startswith(OPEN_CALL) and parse_tool_calls(choice.text)[1] == []


def test_an_uncompilable_constraint_is_refused_before_starting(engine: Any, tiny_model_dir: Path) -> None:
    bad = Constraint(lark='start: "a" undefined_rule\n', param="tools")
    with pytest.raises(InvalidRequest) as err:
        engine.generate_sync(generation(tiny_model_dir, bad, max_tokens=5), timeout=60)
    assert err.value.param == "tools"


def test_constrained_and_free_rows_share_a_batch(tiny_model_dir: Path) -> None:
    """Each row follows its own grammar (or none): batched results equal solo ones (greedy)."""
    from afinar.inference.engine import HFEngine

    named = grammar.tool_call_constraint(FUNCTIONS[:1], parallel=False)
    cases: dict[str, GenerationRequest] = {
        "free": generation(tiny_model_dir, None, temperature=0.0, max_tokens=12, logit_bias={2: -100.0}),
        "tools": generation(
            tiny_model_dir,
            grammar.tool_call_constraint(FUNCTIONS, parallel=False),
            OPEN_CALL,
            temperature=0.0,
            max_tokens=120,
        ),
        "named": generation(
            tiny_model_dir,
            named,
            '<tool_call>\n{"name": "refund", "arguments": ',
            temperature=0.0,
            max_tokens=120,
        ),
        "json": generation(
            tiny_model_dir, grammar.json_constraint(REFUND), "{", temperature=0.0, max_tokens=120
        ),
    }
    engine = HFEngine(max_batch_size=8)
    try:
        solo = {k: engine.generate_sync(r, timeout=300).choices[0].text for k, r in cases.items()}
        together: dict[str, str] = {}

        def run(key: str) -> None:
            together[key] = engine.generate_sync(cases[key], timeout=300).choices[0].text

        threads = [threading.Thread(target=run, args=(k,)) for k in cases]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert together == solo
        assert engine.stats["max_batch_rows"] > 1
    finally:
        engine.close()
    assert_calls(solo["tools"])
    assert_calls(solo["named"], {"refund"})
    assert valid(REFUND, json.loads(solo["json"]))
    assert "<tool_call>" not in solo["free"] and len(solo["free"]) > 0


def test_requests_without_a_constraint_never_touch_the_grammar_machinery(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from afinar.inference.engine import HFEngine
    from afinar.inference.guide import Guide

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a free request built a grammar")

    monkeypatch.setattr(Guide, "start", refuse)
    monkeypatch.setattr(Guide, "allowed", refuse)
    engine = HFEngine()
    try:
        result = engine.generate_sync(generation(tiny_model_dir, None, n=2, seed=1, max_tokens=4), timeout=60)
        assert all(c.finish_reason in ("stop", "length") for c in result.choices)
        assert engine.store.base(tiny_model_dir).vocab.guidance is None
    finally:
        engine.close()

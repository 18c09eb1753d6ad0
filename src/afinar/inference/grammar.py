"""Output constraints as data: JSON Schema and tool-call grammars, and checking that they compile.

The chat service describes what a reply must look like with a
:class:`~afinar.inference.types.Constraint` built here; the engine turns it into a token mask at
every decode step (``inference/guide.py``). Grammars are written in llguidance's Lark dialect,
which embeds JSON Schemas with ``%json {...}``; nothing here imports torch, so the API tier may
check a request's schemas before any model is loaded.

JSON is always compact in the style of Python's ``json.dumps`` (``", "`` between items,
``": "`` after keys, no other whitespace): the layout the chat template renders tool calls in,
and a bounded one (a model cannot wander off into endless whitespace).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from afinar.errors import InvalidRequest
from afinar.inference.types import Constraint

JSON_STYLE: dict[str, Any] = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
# OpenAI: "Omitting parameters defines a function with an empty parameter list."
NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}
ANY_OBJECT: dict[str, Any] = {"type": "object"}


@dataclass(frozen=True)
class FunctionSpec:
    """One callable tool: its name, its parameters' JSON Schema, and OpenAI's ``strict`` flag
    (off: JSON Schema keywords the compiler does not implement are ignored, not refused)."""

    name: str
    parameters: Mapping[str, Any] | None = None  # None: no parameters, arguments are ``{}``
    strict: bool = False
    param: str = "tools"  # where the schema sits in the request, for errors

    @property
    def schema(self) -> Mapping[str, Any]:
        return NO_PARAMETERS if self.parameters is None else self.parameters

    def check(self) -> None:
        check_schema(self.schema, param=self.param, strict=self.strict, what="parameters schema")


def json_constraint(
    schema: Mapping[str, Any], *, strict: bool = True, param: str | None = None
) -> Constraint:
    """The reply is one JSON value valid for ``schema``, and nothing else."""
    return Constraint(json_schema=dict(schema), lenient=not strict, param=param)


def tool_call_constraint(
    functions: Sequence[FunctionSpec],
    *,
    parallel: bool,
    or_json: Mapping[str, Any] | None = None,
    json_strict: bool = True,
    param: str | None = "tools",
) -> Constraint:
    """The reply is one tool call (or several, one per line, with ``parallel``) in the chat
    template's syntax, ``<tool_call>\\n{"name": …, "arguments": …}\\n</tool_call>``, naming one
    of ``functions`` with arguments valid for its parameters schema.

    With ``or_json`` the reply may instead be one JSON value valid for that schema (tools on
    ``auto`` together with a JSON ``response_format``).
    """
    if not functions:
        raise ValueError("a tool-call grammar needs at least one function")
    lines = [
        "start: calls" + (" | answer" if or_json is not None else ""),
        'calls: call ("\\n" call)*' if parallel else "calls: call",
        "call: "
        + _literal('<tool_call>\n{"name": ')
        + " ("
        + " | ".join(f"fn_{i}" for i in range(len(functions)))
        + ") "
        + _literal("}\n</tool_call>"),
    ]
    for i, fn in enumerate(functions):
        head = _literal(json.dumps(fn.name) + ', "arguments": ')
        lines.append(f"fn_{i}: {head} {_json(fn.schema, lenient=not fn.strict)}")
    if or_json is not None:
        lines.append("answer: " + _json(or_json, lenient=not json_strict))
    return Constraint(lark="\n".join(lines) + "\n", param=param)


def _literal(text: str) -> str:
    """A Lark string literal matching ``text`` exactly (JSON escapes are Lark escapes)."""
    return json.dumps(text)


def _json(schema: Mapping[str, Any], lenient: bool) -> str:
    """An embedded JSON Schema in the house style (our options win over the schema's own)."""
    options = {**JSON_STYLE, "lenient": True} if lenient else JSON_STYLE
    return "%json " + json.dumps({**schema, "x-guidance": options})


def compile_grammar(constraint: Constraint) -> str:
    """The llguidance grammar for a constraint (not yet validated)."""
    from llguidance import LLMatcher

    if constraint.json_schema is not None:
        options = {**JSON_STYLE, "lenient": True} if constraint.lenient else JSON_STYLE
        return LLMatcher.grammar_from_json_schema(dict(constraint.json_schema), overrides=options)  # type: ignore[arg-type]
    if constraint.lark is not None:
        return LLMatcher.grammar_from_lark(constraint.lark)
    raise ValueError("a constraint needs a JSON schema or a grammar")


def grammar_error(constraint: Constraint) -> str:
    """Why the constraint does not compile; empty when it does."""
    from llguidance import LLMatcher

    try:
        grammar = compile_grammar(constraint)
    except (ValueError, TypeError) as exc:
        return str(exc)
    message = LLMatcher.validate_grammar(grammar)
    return "" if message.startswith("WARNING") else message


def check_schema(schema: Any, *, param: str, strict: bool = True, what: str = "schema") -> None:
    """Raise ``InvalidRequest`` (naming ``param``) unless ``schema`` is a JSON Schema we can enforce."""
    if not isinstance(schema, Mapping):
        raise InvalidRequest(f"Invalid {what} at '{param}': expected a JSON Schema object.", param=param)
    error = grammar_error(json_constraint(schema, strict=strict))
    if error:
        raise InvalidRequest(f"Invalid {what} at '{param}': {_first_line(error)}", param=param)


def check(constraint: Constraint) -> None:
    """Raise ``InvalidRequest`` (naming the constraint's ``param``) unless it compiles."""
    error = grammar_error(constraint)
    if error:
        raise InvalidRequest(
            f"The output constraint could not be compiled: {_first_line(error)}", param=constraint.param
        )


def _first_line(message: str) -> str:
    """llguidance errors may carry a dump of the grammar after the first lines; keep them short."""
    lines = [line for line in message.strip().splitlines() if line.strip()]
    return " ".join(lines[:3])[:500] if lines else "invalid schema"

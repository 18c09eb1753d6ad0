"""Wire shapes of the Responses API (``/v1/responses``): the request check and the response objects.

The request model takes the fields Afinar honours (docs/api.md, "Responses"); a field it cannot
honour (reasoning, built-in tools, images and files, background runs...) is a 400 naming it, with
code ``unsupported_parameter``, unless it is sent empty (``null``, ``false``, ``[]``,
``truncation: "disabled"``); an unknown field is a 400 ``unknown_parameter``. A valid request
becomes a :class:`~afinar.services.responses.ResponseRequest` (``to_domain``). The builders below
shape the ``response`` object, the input item list and the typed stream events the SDK parses.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from afinar.errors import AfinarError, InvalidRequest
from afinar.inference.types import SamplingParams
from afinar.services.chat import ChatUsage, ResponseFormat, ToolChoice
from afinar.services.responses import (
    ArgumentsAdded,
    ItemAdded,
    ItemDone,
    ResponseRecord,
    ResponseRequest,
    Step,
    TextAdded,
    output_text,
    replay_steps,
)

ROLES = ("user", "assistant", "system", "developer")
TEXT_PARTS = {"input_text", "output_text", "text"}
MEDIA_PARTS = {"input_image", "input_file", "input_audio", "image_url", "file"}
# Parameters the SDK may send that Afinar cannot honour, with the values that ask for nothing.
UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "reasoning": (None, {}),
    "include": (None, []),
    "background": (None, False),
    "background_options": (None,),
    "truncation": (None, "disabled"),
    "conversation": (None,),
    "prompt": (None,),
    "max_tool_calls": (None,),
    "top_logprobs": (None, 0),
    "context_management": (None, []),
    "prompt_cache_options": (None,),
    "prompt_cache_retention": (None,),
    "moderation": (None,),
    "image": (None,),
    "access_programs": (None,),
}
MAX_METADATA_KEYS, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512


def _unsupported(param: str, what: str) -> InvalidRequest:
    return InvalidRequest(
        f"{what} is not supported by this server (Afinar serves text-only models; see docs/api.md).",
        param=param,
        code="unsupported_parameter",
    )


class ResponseCreateRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    input: str | list[Any] | None = None
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    metadata: dict[str, str] | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    tools: list[Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    user: str | None = None
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None
    # Accepted and ignored (nothing to do for a local model):
    service_tier: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None

    _domain: ResponseRequest | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check(self) -> ResponseCreateRequest:
        for name, value in (self.model_extra or {}).items():
            if name not in UNSUPPORTED:
                raise InvalidRequest(f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")
            if not any(value == empty and type(value) is type(empty) for empty in UNSUPPORTED[name]):
                raise _unsupported(name, f"The '{name}' parameter")
        if self.input is None and self.instructions is None and self.previous_response_id is None:
            raise InvalidRequest("Missing required parameter: 'input'.", param="input")
        items = _items(self.input)
        tools = _tools(self.tools)
        choice = _tool_choice(self.tool_choice, tools)
        text, fmt = _text(self.text, items, self.instructions)
        _check_metadata(self.metadata)
        if self.stream_options is not None and not self.stream:
            raise InvalidRequest(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
            )
        params = SamplingParams(
            max_tokens=self.max_output_tokens,
            temperature=1.0 if self.temperature is None else float(self.temperature),
            top_p=1.0 if self.top_p is None else float(self.top_p),
        )
        parallel = self.parallel_tool_calls is not False
        store = self.store is not False
        settings = {
            "instructions": self.instructions,
            "metadata": dict(self.metadata or {}),
            "tools": tools,
            "tool_choice": self.tool_choice
            if self.tool_choice is not None
            else ("auto" if tools else "none"),
            "text": text,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_output_tokens": self.max_output_tokens,
            "parallel_tool_calls": parallel,
            "user": self.user,
        }
        self._domain = ResponseRequest(
            model=self.model,
            input_items=items,
            instructions=self.instructions,
            params=params,
            tools=tools or None,
            tool_choice=choice,
            parallel_tool_calls=parallel,
            text_format=fmt,
            store=store,
            previous_response_id=self.previous_response_id,
            stream=bool(self.stream),
            settings=settings,
        )
        return self

    def to_domain(self) -> ResponseRequest:
        assert self._domain is not None  # set by the validator
        return self._domain


# --- request checks ---------------------------------------------------------------------------


def _items(raw: str | list[Any] | None) -> list[dict[str, Any]]:
    """The input as normalised items: messages with content part lists, function calls, outputs."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": raw}]}]
    items = []
    for i, item in enumerate(raw):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"Invalid type for '{where}': expected an object.", param=where)
        kind = item.get("type", "message")
        if kind == "message":
            items.append(_message(item, where))
        elif kind == "function_call":
            fields = {k: _string(item, k, where) for k in ("call_id", "name", "arguments")}
            items.append({"type": kind, **fields, **_own_id(item)})
        elif kind == "function_call_output":
            output = item.get("output")
            if not isinstance(output, str):
                output = _text_parts(output, f"{where}.output", "input_text")
                output = "".join(p["text"] for p in output)
            items.append(
                {"type": kind, "call_id": _string(item, "call_id", where), "output": output, **_own_id(item)}
            )
        else:
            raise _unsupported(f"{where}.type", f"Input items of type '{kind}'")
    return items


def _message(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ROLES:
        raise InvalidRequest(
            f"Invalid value for '{where}.role': {role!r}. Supported values are: "
            + ", ".join(f"'{r}'" for r in ROLES)
            + ".",
            param=f"{where}.role",
        )
    part = "output_text" if role == "assistant" else "input_text"
    content = item.get("content")
    parts = (
        [{"type": part, "text": content}]
        if isinstance(content, str)
        else _text_parts(content, f"{where}.content", part)
    )
    if role == "assistant":
        parts = [output_text(p["text"]) for p in parts]
    return {"type": "message", "role": role, "content": parts, **_own_id(item)}


def _text_parts(content: Any, where: str, part: str) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        raise InvalidRequest(
            f"Invalid type for '{where}': expected a string or a list of parts.", param=where
        )
    parts = []
    for j, p in enumerate(content):
        kind = p.get("type") if isinstance(p, dict) else None
        if kind in MEDIA_PARTS:
            raise InvalidRequest(
                f"This model is text-only: content parts of type '{kind}' are not supported.",
                param=f"{where}[{j}]",
                code="unsupported_content_type",
            )
        if kind not in TEXT_PARTS and kind != "refusal":
            raise InvalidRequest(
                f"Invalid content part type {kind!r} at '{where}[{j}]'.", param=f"{where}[{j}].type"
            )
        text = p.get("refusal" if kind == "refusal" else "text")
        if not isinstance(text, str):
            raise InvalidRequest(
                f"Missing required parameter: '{where}[{j}].text'.", param=f"{where}[{j}].text"
            )
        parts.append({"type": part, "text": text})
    return parts


def _string(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise InvalidRequest(f"Missing required parameter: '{where}.{key}'.", param=f"{where}.{key}")
    return value


def _own_id(item: dict[str, Any]) -> dict[str, str]:
    return {"id": item["id"]} if isinstance(item.get("id"), str) and item["id"] else {}


def _tools(raw: list[Any] | None) -> list[dict[str, Any]]:
    tools = []
    for i, tool in enumerate(raw or []):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind != "function":
            raise _unsupported(f"tools[{i}].type", f"Tools of type {kind!r} (only 'function' tools are)")
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise InvalidRequest(f"Missing required parameter: 'tools[{i}].name'.", param=f"tools[{i}].name")
        parameters = tool.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise InvalidRequest(f"Invalid type for 'tools[{i}].parameters'.", param=f"tools[{i}].parameters")
        tools.append(
            {
                "type": "function",
                "name": tool["name"],
                "description": tool.get("description"),
                "parameters": parameters,
                "strict": tool.get("strict"),
            }
        )
    return tools


def _tool_choice(raw: str | dict[str, Any] | None, tools: list[dict[str, Any]]) -> ToolChoice:
    if raw is None:
        return ToolChoice("auto" if tools else "none")
    if raw in ("none", "auto", "required"):
        if raw == "required" and not tools:
            raise InvalidRequest(
                "'tool_choice' is 'required' but no 'tools' were given.", param="tool_choice"
            )
        return ToolChoice(str(raw))
    if isinstance(raw, dict) and raw.get("type") == "function":
        name = raw.get("name")
        if name not in [t["name"] for t in tools]:
            raise InvalidRequest(
                f"Invalid value for 'tool_choice': no function named {name!r} in 'tools'.",
                param="tool_choice",
            )
        return ToolChoice("function", str(name))
    what = raw.get("type") if isinstance(raw, dict) else raw
    raise _unsupported("tool_choice", f"A 'tool_choice' of {what!r}")


def _text(
    raw: dict[str, Any] | None, items: list[dict[str, Any]], instructions: str | None
) -> tuple[dict[str, Any], ResponseFormat]:
    """The ``text`` setting to echo, and the chat path's ``response_format`` for its ``format``."""
    raw = raw or {}
    fmt = raw.get("format") or {"type": "text"}
    echo = {"format": fmt, "verbosity": raw.get("verbosity") or "medium"}
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return echo, ResponseFormat()
    if kind == "json_object":
        said = json.dumps([instructions, items]).lower()
        if "json" not in said:
            raise InvalidRequest(
                "Response input messages must contain the word 'json' in some form to use 'text.format' of "
                "type 'json_object'.",
                param="input",
            )
        return echo, ResponseFormat("json_object")
    if kind != "json_schema":
        raise InvalidRequest(f"Invalid value for 'text.format.type': {kind!r}.", param="text.format.type")
    if not isinstance(fmt.get("name"), str):
        raise InvalidRequest("Missing required parameter: 'text.format.name'.", param="text.format.name")
    if not isinstance(fmt.get("schema"), dict):
        raise InvalidRequest("Missing required parameter: 'text.format.schema'.", param="text.format.schema")
    return echo, ResponseFormat("json_schema", fmt["schema"], bool(fmt.get("strict")))


def _check_metadata(metadata: dict[str, str] | None) -> None:
    if metadata is None:
        return
    if len(metadata) > MAX_METADATA_KEYS:
        raise InvalidRequest(f"'metadata' may have at most {MAX_METADATA_KEYS} keys.", param="metadata")
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY or len(value) > MAX_METADATA_VALUE:
            raise InvalidRequest(
                f"'metadata' keys are at most {MAX_METADATA_KEY} characters and values at most "
                f"{MAX_METADATA_VALUE}.",
                param=f"metadata.{key[:MAX_METADATA_KEY]}",
            )


# --- objects ----------------------------------------------------------------------------------


def usage_body(usage: ChatUsage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


def response_object(record: ResponseRecord) -> dict[str, Any]:
    """The ``response`` object (the SDK's ``Response``; ``output_text`` joins its text parts)."""
    s = record.settings
    reason = record.incomplete_reason
    return {
        "id": record.id,
        "object": "response",
        "created_at": record.created_at,
        "status": record.status,
        "completed_at": record.completed_at,
        "error": None,
        "incomplete_details": {"reason": reason} if reason else None,
        "instructions": s.get("instructions"),
        "max_output_tokens": s.get("max_output_tokens"),
        "model": record.model,
        "output": record.output,
        "parallel_tool_calls": s.get("parallel_tool_calls", True),
        "previous_response_id": record.previous_response_id,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": record.store,
        "temperature": s.get("temperature"),
        "text": s.get("text"),
        "tool_choice": s.get("tool_choice", "auto"),
        "tools": s.get("tools", []),
        "top_p": s.get("top_p"),
        "truncation": "disabled",
        "usage": usage_body(record.usage) if record.usage is not None else None,
        "user": s.get("user"),
        "metadata": s.get("metadata") or {},
        "background": False,
    }


def deleted_object(response_id: str) -> dict[str, Any]:
    return {"id": response_id, "object": "response", "deleted": True}


def items_list(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """``GET /v1/responses/{id}/input_items``: the SDK's ``ResponseItemList``."""
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }


class StreamEvents:
    """The typed stream events of one response, numbered in order (``sequence_number``)."""

    def __init__(self) -> None:
        self._seq = 0

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        body = {"type": kind, **fields, "sequence_number": self._seq}
        self._seq += 1
        return body

    def opening(self, response: dict[str, Any]) -> list[dict[str, Any]]:
        """``response.created`` and ``response.in_progress``, with the response as it starts."""
        started = {**response, "status": "in_progress", "output": [], "usage": None, "completed_at": None}
        started["incomplete_details"] = None
        return [
            self.event("response.created", response=started),
            self.event("response.in_progress", response=started),
        ]

    def step(self, step: Step) -> list[dict[str, Any]]:
        if isinstance(step, TextAdded):
            return [
                self.event(
                    "response.output_text.delta",
                    item_id=step.item_id,
                    output_index=step.output_index,
                    content_index=0,
                    delta=step.text,
                    logprobs=[],
                )
            ]
        if isinstance(step, ArgumentsAdded):
            return [
                self.event(
                    "response.function_call_arguments.delta",
                    item_id=step.item_id,
                    output_index=step.output_index,
                    delta=step.arguments,
                )
            ]
        item, at = step.item, step.output_index
        if isinstance(step, ItemAdded):
            out = [self.event("response.output_item.added", output_index=at, item=item)]
            if item["type"] == "message":
                where = {"item_id": item["id"], "output_index": at, "content_index": 0}
                out.append(self.event("response.content_part.added", **where, part=output_text("")))
            return out
        assert isinstance(step, ItemDone)
        out = []
        if item["type"] == "message":
            part = item["content"][0]
            where = {"item_id": item["id"], "output_index": at, "content_index": 0}
            out.append(self.event("response.output_text.done", **where, text=part["text"], logprobs=[]))
            out.append(self.event("response.content_part.done", **where, part=part))
        else:
            out.append(
                self.event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=at,
                    arguments=item["arguments"],
                )
            )
        out.append(self.event("response.output_item.done", output_index=at, item=item))
        return out

    def closing(self, response: dict[str, Any]) -> dict[str, Any]:
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        return self.event(kind, response=response)

    def replay(self, response: dict[str, Any]) -> list[dict[str, Any]]:
        """Every event of a finished response again (an ``Idempotency-Key`` replay of a stream)."""
        out = self.opening(response)
        for step in replay_steps(response["output"]):
            out += self.step(step)
        return [*out, self.closing(response)]

    def error(self, exc: AfinarError | None) -> dict[str, Any]:
        if exc is None:
            return self.event("error", code="server_error", message="The server had an error.", param=None)
        return self.event("error", code=exc.code, message=exc.message, param=exc.param)

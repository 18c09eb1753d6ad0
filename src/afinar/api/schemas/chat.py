"""Wire shapes of ``POST /v1/chat/completions`` (contract §1.6): the one check of a request.

The request model accepts every documented field (and ignores unknown ones). Field types and
ranges are pydantic's; the rest (message shapes, stop sequences, logit bias, tools, response
formats, modalities) is checked after the fields, in that order, raising ``InvalidRequest`` with
OpenAI's messages and the exact offending part (``messages[2].content``). A valid request becomes
a :class:`~afinar.services.chat.ChatRequest` (``to_domain``). Which fields are honoured is
documented in ``docs/api.md``.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from afinar.errors import InvalidRequest
from afinar.inference.types import SamplingParams
from afinar.services.chat import ChatCompletion, ChatRequest, ResponseFormat, ToolChoice

ROLES = {"developer", "system", "user", "assistant", "tool", "function"}
TEXT_PARTS = {"text", "refusal"}
MEDIA_PARTS = {"image_url", "input_audio", "file", "input_image", "input_file"}
MAX_STOP = 4


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    n: int | None = Field(default=None, ge=1, le=128)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    seed: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    functions: list[dict[str, Any]] | None = None  # deprecated
    function_call: str | dict[str, Any] | None = None  # deprecated
    response_format: dict[str, Any] | None = None
    # Accepted and ignored (nothing to do for a local text model):
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    service_tier: str | None = None
    reasoning_effort: str | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    verbosity: str | None = None

    _domain: ChatRequest | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check(self) -> ChatCompletionRequest:
        """The checks past field types, in the order clients have always seen their errors."""
        messages = _messages(self.messages)
        params = self._sampling()
        tools, choice, legacy = self._tools()
        fmt = _response_format(self.response_format, messages)
        if self.stream_options is not None and not self.stream:
            raise InvalidRequest(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
            )
        if any(m != "text" for m in self.modalities or ["text"]) or self.audio is not None:
            raise InvalidRequest(
                "This model is text-only: only the 'text' modality is supported.", param="modalities"
            )
        stream = bool(self.stream)
        self._domain = ChatRequest(
            model=self.model,
            messages=messages,
            params=params,
            tools=tools,
            tool_choice=choice,
            legacy_functions=legacy,
            parallel_tool_calls=self.parallel_tool_calls is not False,
            response_format=fmt,
            stream=stream,
            include_usage=bool(stream and self.stream_options and self.stream_options.include_usage),
        )
        return self

    def to_domain(self) -> ChatRequest:
        """The checked request, as the chat service takes it."""
        assert self._domain is not None  # set by the validator
        return self._domain

    def _sampling(self) -> SamplingParams:
        stops = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        if len(stops) > MAX_STOP:
            raise InvalidRequest(f"'stop' may contain at most {MAX_STOP} sequences.", param="stop")
        bias: dict[int, float] = {}
        for key, value in (self.logit_bias or {}).items():
            try:
                token = int(key)
            except (TypeError, ValueError):
                raise InvalidRequest(
                    f"Invalid key in 'logit_bias': {key!r} is not a token id.", param="logit_bias"
                ) from None
            if not -100 <= float(value) <= 100:
                raise InvalidRequest("'logit_bias' values must be between -100 and 100.", param="logit_bias")
            bias[token] = float(value)
        logprobs = bool(self.logprobs)
        top = self.top_logprobs or 0
        if top and not logprobs:
            raise InvalidRequest(
                "'logprobs' must be set to true when 'top_logprobs' is used.", param="top_logprobs"
            )
        max_tokens = self.max_completion_tokens or self.max_tokens
        return SamplingParams(
            max_tokens=int(max_tokens) if max_tokens else None,
            temperature=1.0 if self.temperature is None else float(self.temperature),
            top_p=1.0 if self.top_p is None else float(self.top_p),
            n=int(self.n or 1),
            stop=tuple(s for s in stops if s),
            seed=self.seed,
            presence_penalty=float(self.presence_penalty or 0.0),
            frequency_penalty=float(self.frequency_penalty or 0.0),
            logit_bias=bias,
            logprobs=logprobs,
            top_logprobs=int(top),
        )

    def _tools(self) -> tuple[list[dict[str, Any]] | None, ToolChoice, bool]:
        """The function tools (legacy ``functions`` converted), the choice among them, and whether
        they came as legacy ``functions``."""
        tools = self.tools or None
        choice = self.tool_choice
        legacy = False
        if tools is None and self.functions:
            tools = [{"type": "function", "function": f} for f in self.functions]
            legacy = True
            call = self.function_call
            choice = {"type": "function", "function": call} if isinstance(call, dict) else call
        if tools is None:
            if choice is not None and not legacy and self.tool_choice is not None:
                raise InvalidRequest(
                    "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
                    "specified.",
                    param="tool_choice",
                )
            return None, ToolChoice("none"), legacy
        names = []
        for i, tool in enumerate(tools):
            fn = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(fn, dict) or not fn.get("name") or tool.get("type", "function") != "function":
                raise InvalidRequest(
                    f"Invalid tool at 'tools[{i}]': expected a function with a name.", param=f"tools[{i}]"
                )
            names.append(str(fn["name"]))
        choice = choice or "auto"
        if choice in ("none", "auto", "required"):
            return tools, ToolChoice(str(choice)), legacy
        name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
        if name not in names:
            raise InvalidRequest(
                f"Invalid value for 'tool_choice': no function named {name!r} in 'tools'.",
                param="tool_choice",
            )
        return tools, ToolChoice("function", str(name)), legacy


def _messages(raw: list[Any]) -> list[dict[str, Any]]:
    if not raw:
        raise InvalidRequest("'messages' must contain at least one message.", param="messages")
    for i, msg in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise InvalidRequest(f"Invalid type for '{where}': expected an object.", param=where)
        role = msg.get("role")
        if role not in ROLES:
            raise InvalidRequest(
                f"Invalid value for '{where}.role': {role!r}. Supported values are: "
                + ", ".join(f"'{r}'" for r in sorted(ROLES))
                + ".",
                param=f"{where}.role",
            )
        content = msg.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind in MEDIA_PARTS:
                    raise InvalidRequest(
                        f"This model is text-only: content parts of type '{kind}' are not supported.",
                        param=f"{where}.content[{j}]",
                        code="unsupported_content_type",
                    )
                if kind not in TEXT_PARTS:
                    raise InvalidRequest(
                        f"Invalid content part type {kind!r} in '{where}.content[{j}]'.",
                        param=f"{where}.content[{j}].type",
                    )
        elif content is not None and not isinstance(content, str):
            raise InvalidRequest(f"Invalid type for '{where}.content'.", param=f"{where}.content")
        if msg.get("audio") is not None:
            raise InvalidRequest("This model is text-only: audio is not supported.", param=f"{where}.audio")
    return [dict(m) for m in raw]


def _response_format(fmt: dict[str, Any] | None, messages: list[dict[str, Any]]) -> ResponseFormat:
    """JSON mode: a JSON object, or JSON valid for the given schema (``None``: any object)."""
    fmt = fmt or {"type": "text"}
    kind = fmt.get("type")
    if kind == "text":
        return ResponseFormat()
    if kind not in ("json_object", "json_schema"):
        raise InvalidRequest(
            f"Invalid value for 'response_format.type': {kind!r}.", param="response_format.type"
        )
    if kind == "json_object":
        if not any("json" in json.dumps(m.get("content") or "").lower() for m in messages):
            raise InvalidRequest(
                "'messages' must contain the word 'json' in some form, to use 'response_format' of type "
                "'json_object'.",
                param="messages",
            )
        return ResponseFormat("json_object")
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict):
        raise InvalidRequest(
            "Missing required parameter: 'response_format.json_schema'.", param="response_format.json_schema"
        )
    param = "response_format.json_schema.schema"
    schema = spec.get("schema")
    if "schema" in spec and not isinstance(schema, dict):
        raise InvalidRequest(f"Invalid schema at '{param}': expected a JSON Schema object.", param=param)
    return ResponseFormat("json_schema", schema, bool(spec.get("strict")))


FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


def usage_body(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def logprobs_body(content: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    return None if content is None else {"content": content, "refusal": None}


def completion_object(result: ChatCompletion) -> dict[str, Any]:
    """The ``chat.completion`` object of a finished completion."""
    choices = [
        {
            "index": c.index,
            "message": message_body(c.content, c.tool_calls, c.function_call),
            "logprobs": logprobs_body(c.logprobs),
            "finish_reason": c.finish_reason,
        }
        for c in result.choices
    ]
    usage = usage_body(result.usage.prompt_tokens, result.usage.completion_tokens)
    return completion_body(result.id, result.created, result.model, choices, usage)


def completion_body(
    id_: str, created: int, model: str, choices: list[dict[str, Any]], usage: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": id_,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": None,
    }


def message_body(
    content: str | None,
    tool_calls: list[dict[str, Any]] | None = None,
    function_call: dict[str, Any] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if function_call is not None:
        message["function_call"] = function_call
    return message


def chunk_body(
    id_: str,
    created: int,
    model: str,
    choices: list[dict[str, Any]],
    *,
    include_usage: bool,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": id_,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "service_tier": "default",
        "choices": choices,
    }
    if include_usage:
        body["usage"] = usage
    return body


def chunk_choice(
    index: int,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    logprobs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "index": index,
        "delta": delta,
        "logprobs": logprobs_body(logprobs),
        "finish_reason": finish_reason,
    }

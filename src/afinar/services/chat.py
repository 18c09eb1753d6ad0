"""Chat completions: validate an OpenAI request, resolve the model, run the engine, shape choices.

``complete`` returns a finished :class:`ChatCompletion`; ``open_stream`` returns a
:class:`ChatStream` only once the engine has accepted the request (prompt rendered and within
the context), so every refusal is an ordinary error raised before the first byte is sent.
Both carry the exact usage, which is metered once per completion (keyed by its id) at the base
model's inference prices; a caller past its spend limit is refused before any generation.
Which request fields are honoured is listed in ``docs/api.md``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from afinar import ids
from afinar.errors import InvalidRequest, ServerError
from afinar.inference import grammar
from afinar.inference.assemble import ChoiceAssembler, ChoiceDelta, ToolMode, merge
from afinar.inference.grammar import FunctionSpec
from afinar.inference.types import Constraint, Delta, Finished, GenerationRequest, SamplingParams, Started
from afinar.safety import runtime
from afinar.services import org_settings

if TYPE_CHECKING:
    from afinar.domain.models import ServableModel
    from afinar.services.container import Container
    from afinar.services.orgs import Principal

log = logging.getLogger(__name__)

ROLES = {"developer", "system", "user", "assistant", "tool", "function"}
TEXT_PARTS = {"text", "refusal"}
MEDIA_PARTS = {"image_url", "input_audio", "file", "input_image", "input_file"}
MAX_STOP = 4


@dataclass(frozen=True)
class ChatUsage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class ChatChoice:
    index: int
    content: str | None
    finish_reason: str
    tool_calls: list[dict[str, Any]] | None = None
    function_call: dict[str, Any] | None = None
    logprobs: list[dict[str, Any]] | None = None


@dataclass
class ChatCompletion:
    id: str
    created: int
    model: str
    choices: list[ChatChoice]
    usage: ChatUsage


@dataclass(frozen=True)
class PreparedChat:
    servable: ServableModel
    generation: GenerationRequest
    tool_mode: ToolMode
    stream: bool
    include_usage: bool


@dataclass
class ChatStream:
    """An accepted streaming completion: iterate ``deltas()``; ``usage`` is set at the end."""

    id: str
    created: int
    model: str
    include_usage: bool
    prompt_tokens: int
    _events: AsyncIterator[Any]
    _assemblers: list[ChoiceAssembler]
    _on_done: Callable[[ChatUsage], None]
    usage: ChatUsage | None = None
    _completion_tokens: int = field(default=0)
    _moderator: Any = None  # runtime moderation of the output (safety/runtime.py), when on
    _window: int = 200

    async def deltas(self) -> AsyncIterator[ChoiceDelta]:
        raw = self._deltas()
        if self._moderator is not None:
            raw = runtime.filter_stream(raw, self._moderator, window=self._window)
        async for d in raw:
            yield d

    async def _deltas(self) -> AsyncIterator[ChoiceDelta]:
        for assembler in self._assemblers:
            yield ChoiceDelta(assembler.index, role="assistant", content="")
        async for event in self._events:
            if isinstance(event, Delta):
                for d in self._assemblers[event.index].feed(event.text, event.logprobs):
                    yield d
            elif isinstance(event, Finished):
                self._completion_tokens += event.completion_tokens
                for d in self._assemblers[event.index].finish(event.finish_reason):
                    yield d
        self.usage = ChatUsage(self.prompt_tokens, self._completion_tokens)
        self._on_done(self.usage)

    async def aclose(self) -> None:
        aclose = getattr(self._events, "aclose", None)
        if aclose is not None:
            await aclose()


class ChatService:
    def __init__(self, c: Container) -> None:
        self.c = c

    # --- public --------------------------------------------------------------------------

    async def complete(self, who: Principal, body: dict[str, Any]) -> ChatCompletion:
        started = time.monotonic()
        try:
            return await self._complete(who, body, started)
        except Exception:
            self.c.metrics.failed(self._model_label(body))
            raise

    async def _complete(self, who: Principal, body: dict[str, Any], started: float) -> ChatCompletion:
        await asyncio.to_thread(self.c.usage.check_chat_allowed, who)
        prepared = await self.prepare(who.org_id, body)
        moderator = await self._moderate_input(who.org_id, prepared)
        engine = await asyncio.to_thread(lambda: self.c.engine)
        result = await engine.generate(prepared.generation)
        choices = []
        want_logprobs = prepared.generation.params.logprobs
        for choice in result.choices:
            assembler = ChoiceAssembler(choice.index, prepared.tool_mode, want_logprobs)
            deltas = assembler.feed(choice.text, choice.logprobs)
            deltas += assembler.finish(choice.finish_reason or "stop")
            merged = merge(deltas, want_logprobs)
            choices.append(ChatChoice(index=choice.index, **merged))
        if moderator is not None:
            await asyncio.to_thread(_filter_choices, moderator, choices)
        usage = ChatUsage(result.prompt_tokens, result.completion_tokens)
        completion_id = ids.completion_id()
        await asyncio.to_thread(self._record, who, completion_id, prepared.servable, usage, started)
        return ChatCompletion(completion_id, int(self.c.clock()), prepared.servable.name, choices, usage)

    async def open_stream(self, who: Principal, body: dict[str, Any]) -> ChatStream:
        started = time.monotonic()
        try:
            return await self._open_stream(who, body, started)
        except Exception:
            self.c.metrics.failed(self._model_label(body))
            raise

    async def _open_stream(self, who: Principal, body: dict[str, Any], started: float) -> ChatStream:
        await asyncio.to_thread(self.c.usage.check_chat_allowed, who)
        prepared = await self.prepare(who.org_id, body)
        moderator = await self._moderate_input(who.org_id, prepared)
        engine = await asyncio.to_thread(lambda: self.c.engine)
        events = engine.stream(prepared.generation)
        try:
            first = await anext(events)
        except BaseException:
            await events.aclose()
            raise
        if not isinstance(first, Started):  # pragma: no cover - the engine always starts so
            await events.aclose()
            raise ServerError("The inference engine answered out of order.")
        params = prepared.generation.params
        servable = prepared.servable
        completion_id = ids.completion_id()
        return ChatStream(
            id=completion_id,
            created=int(self.c.clock()),
            model=servable.name,
            include_usage=prepared.include_usage,
            prompt_tokens=first.prompt_tokens,
            _events=events,
            _assemblers=[ChoiceAssembler(i, prepared.tool_mode, params.logprobs) for i in range(params.n)],
            _on_done=lambda usage: self._record(who, completion_id, servable, usage, started),
            _moderator=moderator,
            _window=self.c.settings.moderation_stream_window_chars,
        )

    async def prepare(self, org_id: str, body: dict[str, Any]) -> PreparedChat:
        """Check the request, then resolve the model (in a thread: it may read the DB or convert)."""
        messages = _messages(body.get("messages") or [])
        params = _sampling(body)
        plan = _tools(body)
        reply = _response_format(body, messages, plan.mode)
        tools, tool_mode, prefix = plan.tools, plan.mode, plan.prefix or reply.prefix
        stream = bool(body.get("stream"))
        options = body.get("stream_options")
        if options is not None and not stream:
            raise InvalidRequest(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
            )
        _modalities(body)
        constraint = None
        if plan.forced or reply.schema is not None:  # compiling takes a while: off the event loop
            constraint = await asyncio.to_thread(_constraint, plan, reply)
        servable = await asyncio.to_thread(self.c.resolve_servable, org_id, str(body.get("model", "")))
        entry = self.c.catalog.get(servable.base_id)
        generation = GenerationRequest(
            base_path=servable.base_path,
            adapter_path=servable.adapter_path,
            messages=messages,
            tools=tools,
            params=params,
            context_length=entry.context_length if entry is not None else None,
            response_prefix=prefix,
            constraint=constraint,
        )
        include_usage = bool(stream and options and options.get("include_usage"))
        return PreparedChat(servable, generation, tool_mode, stream, include_usage)

    async def _moderate_input(self, org_id: str, prepared: PreparedChat) -> Any:
        """With the organisation's runtime moderation on: refuse flagged input (400), and return
        the moderation engine for the output; None when it is off."""
        if not await asyncio.to_thread(org_settings.runtime_moderation, self.c.db, org_id):
            return None
        moderator = await asyncio.to_thread(lambda: self.c.moderation)
        await asyncio.to_thread(runtime.check_input, moderator, prepared.generation.messages)
        return moderator

    def _model_label(self, body: dict[str, Any]) -> str:
        """A failed request's label: a catalogue id, else "other" (callers must not mint labels)."""
        name = str(body.get("model", ""))
        return name if self.c.catalog.get(name) is not None else "other"

    def _record(
        self, who: Principal, completion_id: str, servable: ServableModel, usage: ChatUsage, started: float
    ) -> None:
        """Meter the completion once (keyed by its id) at its base model's inference prices."""
        self.c.metrics.completed(
            servable.name, usage.prompt_tokens, usage.completion_tokens, time.monotonic() - started
        )
        try:
            self.c.usage.record_inference(
                who,
                completion_id,
                servable.name,
                servable.base_id,
                usage.prompt_tokens,
                usage.completion_tokens,
            )
        except Exception:  # metering must never break a completion already produced
            log.exception("metering completion %s failed", completion_id)


def _filter_choices(moderator: Any, choices: list[ChatChoice]) -> None:
    """Withhold each flagged choice: no content, finish reason ``content_filter`` (billed as generated)."""
    for c in choices:
        if runtime.output_flagged(moderator, runtime.output_text(c.content, c.tool_calls, c.function_call)):
            c.content, c.tool_calls, c.function_call, c.logprobs = None, None, None, None
            c.finish_reason = runtime.CONTENT_FILTER


# --- request checks ---------------------------------------------------------------------------


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


def _sampling(body: dict[str, Any]) -> SamplingParams:
    stop = body.get("stop")
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    if len(stops) > MAX_STOP:
        raise InvalidRequest(f"'stop' may contain at most {MAX_STOP} sequences.", param="stop")
    bias: dict[int, float] = {}
    for key, value in (body.get("logit_bias") or {}).items():
        try:
            token = int(key)
        except (TypeError, ValueError):
            raise InvalidRequest(
                f"Invalid key in 'logit_bias': {key!r} is not a token id.", param="logit_bias"
            ) from None
        if not -100 <= float(value) <= 100:
            raise InvalidRequest("'logit_bias' values must be between -100 and 100.", param="logit_bias")
        bias[token] = float(value)
    logprobs = bool(body.get("logprobs"))
    top = body.get("top_logprobs") or 0
    if top and not logprobs:
        raise InvalidRequest(
            "'logprobs' must be set to true when 'top_logprobs' is used.", param="top_logprobs"
        )
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    temperature = body.get("temperature")
    top_p = body.get("top_p")
    return SamplingParams(
        max_tokens=int(max_tokens) if max_tokens else None,
        temperature=1.0 if temperature is None else float(temperature),
        top_p=1.0 if top_p is None else float(top_p),
        n=int(body.get("n") or 1),
        stop=tuple(s for s in stops if s),
        seed=body.get("seed"),
        presence_penalty=float(body.get("presence_penalty") or 0.0),
        frequency_penalty=float(body.get("frequency_penalty") or 0.0),
        logit_bias=bias,
        logprobs=logprobs,
        top_logprobs=int(top),
    )


@dataclass(frozen=True)
class ToolPlan:
    """What the request's tools mean for this reply."""

    tools: list[dict[str, Any]] | None  # for the prompt
    mode: ToolMode  # how to read calls back
    prefix: str = ""  # forced reply opening
    functions: tuple[FunctionSpec, ...] = ()  # every tool, with the request path of its parameters
    forced: tuple[FunctionSpec, ...] = ()  # tool_choice "required"/named: the reply calls one of these


@dataclass(frozen=True)
class ReplyFormat:
    """What ``response_format`` asks of the reply's content."""

    prefix: str = ""
    schema: dict[str, Any] | None = None  # None: free text
    strict: bool = True
    param: str = "response_format"


def _tools(body: dict[str, Any]) -> ToolPlan:
    """The tools for the prompt, how to read calls back, any forced reply prefix and which calls
    the grammar must force (``tool_choice`` "required" or a named function)."""
    tools = body.get("tools") or None
    choice = body.get("tool_choice")
    legacy = False
    if tools is None and body.get("functions"):
        tools = [{"type": "function", "function": f} for f in body["functions"]]
        legacy = True
        call = body.get("function_call")
        choice = {"type": "function", "function": call} if isinstance(call, dict) else call
    if tools is None:
        if choice is not None and not legacy and body.get("tool_choice") is not None:
            raise InvalidRequest(
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
                param="tool_choice",
            )
        return ToolPlan(None, ToolMode())
    functions = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not fn.get("name") or tool.get("type", "function") != "function":
            raise InvalidRequest(
                f"Invalid tool at 'tools[{i}]': expected a function with a name.", param=f"tools[{i}]"
            )
        where = f"functions[{i}].parameters" if legacy else f"tools[{i}].function.parameters"
        functions.append(FunctionSpec(str(fn["name"]), fn.get("parameters"), bool(fn.get("strict")), where))
    parallel = body.get("parallel_tool_calls") is not False
    choice = choice or "auto"
    if choice == "none":
        return ToolPlan(None, ToolMode())
    mode = ToolMode(parse=True, legacy_functions=legacy, parallel=parallel)
    if choice == "auto":
        return ToolPlan(tools, mode, functions=tuple(functions))
    if choice == "required":
        return ToolPlan(tools, mode, '<tool_call>\n{"name": "', tuple(functions), tuple(functions))
    name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    named = tuple(f for f in functions if f.name == name)
    if not named:
        raise InvalidRequest(
            f"Invalid value for 'tool_choice': no function named {name!r} in 'tools'.", param="tool_choice"
        )
    prefix = '<tool_call>\n{"name": ' + json.dumps(name) + ', "arguments": '
    return ToolPlan(tools, mode, prefix, tuple(functions), named[:1])


def _response_format(body: dict[str, Any], messages: list[dict[str, Any]], mode: ToolMode) -> ReplyFormat:
    """JSON mode: the reply is grammar-constrained to a JSON object, or to the given JSON Schema."""
    fmt = body.get("response_format") or {"type": "text"}
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return ReplyFormat()
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
        return ReplyFormat("" if mode.parse else "{", dict(grammar.ANY_OBJECT))
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict):
        raise InvalidRequest(
            "Missing required parameter: 'response_format.json_schema'.", param="response_format.json_schema"
        )
    param = "response_format.json_schema.schema"
    schema = spec.get("schema", grammar.ANY_OBJECT)
    if not isinstance(schema, dict):
        raise InvalidRequest(f"Invalid schema at '{param}': expected a JSON Schema object.", param=param)
    opens_object = schema.get("type") == "object" and not mode.parse
    return ReplyFormat("{" if opens_object else "", dict(schema), bool(spec.get("strict")), param)


def _constraint(plan: ToolPlan, reply: ReplyFormat) -> Constraint | None:
    """The grammar the whole reply must match, checked to compile (400 naming the culprit if not).

    Tools on "required"/named: tool calls of the forced functions. A JSON ``response_format``: that
    JSON, or (tools on "auto") tool calls of any tool or that JSON. Otherwise free text.
    """
    if plan.forced:
        for fn in plan.forced:
            fn.check()
        constraint = grammar.tool_call_constraint(
            plan.forced, parallel=plan.mode.parallel and not plan.mode.legacy_functions
        )
    elif reply.schema is not None:
        grammar.check_schema(reply.schema, param=reply.param, strict=reply.strict)
        if not plan.mode.parse:
            return grammar.json_constraint(reply.schema, strict=reply.strict, param=reply.param)
        for fn in plan.functions:
            fn.check()
        constraint = grammar.tool_call_constraint(
            plan.functions,
            parallel=plan.mode.parallel and not plan.mode.legacy_functions,
            or_json=reply.schema,
            json_strict=reply.strict,
        )
    else:
        return None
    grammar.check(constraint)
    return constraint


def _modalities(body: dict[str, Any]) -> None:
    modalities = body.get("modalities") or ["text"]
    if any(m != "text" for m in modalities) or body.get("audio") is not None:
        raise InvalidRequest(
            "This model is text-only: only the 'text' modality is supported.", param="modalities"
        )

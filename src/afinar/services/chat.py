"""Chat completions: resolve the model, run the engine, shape choices, meter the usage.

The service receives a :class:`ChatRequest` already checked at the edge
(``api/schemas/chat.py``); it only compiles grammars (a 400 naming a schema it cannot enforce)
and resolves the model. ``complete`` returns a finished :class:`ChatCompletion`; ``open_stream`` returns a
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
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from afinar import ids
from afinar.errors import ServerError
from afinar.inference import grammar
from afinar.inference.assemble import ChoiceAssembler, ChoiceDelta, ToolMode, merge
from afinar.inference.grammar import FunctionSpec
from afinar.inference.types import Constraint, Delta, Finished, GenerationRequest, SamplingParams, Started
from afinar.safety import runtime
from afinar.services import org_settings

if TYPE_CHECKING:
    from afinar.catalog.registry import Catalog
    from afinar.config import Settings
    from afinar.domain.models import ServableModel
    from afinar.inference.protocol import InferenceEngine
    from afinar.inference.types import Event
    from afinar.safety.moderation import ModerationEngine
    from afinar.services.metrics import ServingMetrics
    from afinar.services.orgs import Principal
    from afinar.store.db import Database

log = logging.getLogger(__name__)


# --- the request, as the edge checked it ------------------------------------------------------


@dataclass(frozen=True)
class ToolChoice:
    """``none``, ``auto``, ``required`` or ``function`` (the one named ``name``)."""

    kind: Literal["none", "auto", "required", "function"] | str = "auto"
    name: str | None = None


@dataclass(frozen=True)
class ResponseFormat:
    kind: Literal["text", "json_object", "json_schema"] | str = "text"
    schema: dict[str, Any] | None = None  # json_schema's schema; None: any JSON object
    strict: bool = False


@dataclass(frozen=True)
class ChatRequest:
    """A checked chat completion request (``api/schemas/chat.py`` builds it from the wire)."""

    model: str
    messages: list[dict[str, Any]]
    params: SamplingParams = field(default_factory=SamplingParams)
    tools: list[dict[str, Any]] | None = None  # function tools; legacy ``functions`` converted
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    legacy_functions: bool = False
    parallel_tool_calls: bool = True
    response_format: ResponseFormat = field(default_factory=ResponseFormat)
    stream: bool = False
    include_usage: bool = False


def plain_request(model: str, messages: list[dict[str, Any]], sampling: Mapping[str, Any]) -> ChatRequest:
    """A request without tools or formats, from sampling fields its caller checked (eval runs and
    judges: ``temperature``, ``top_p``, ``seed``, ``max_completion_tokens``)."""
    max_tokens = sampling.get("max_completion_tokens") or sampling.get("max_tokens")
    temperature = sampling.get("temperature")
    top_p = sampling.get("top_p")
    params = SamplingParams(
        max_tokens=int(max_tokens) if max_tokens else None,
        temperature=1.0 if temperature is None else float(temperature),
        top_p=1.0 if top_p is None else float(top_p),
        seed=sampling.get("seed"),
    )
    return ChatRequest(model=model, messages=messages, params=params)


class SpendGate(Protocol):
    def check_chat_allowed(self, principal: Principal, /) -> None:
        """Raise ``QuotaExceeded`` when the caller is past a spend limit."""
        ...


class InferenceMeter(Protocol):
    def record_inference(
        self,
        principal: Principal,
        key: str,
        model: str,
        base_model: str,
        prompt_tokens: int,
        completion_tokens: int,
        /,
    ) -> Any:
        """Meter one completion once (keyed by ``key``) at ``base_model``'s inference prices."""
        ...


# --- results ----------------------------------------------------------------------------------


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
    _events: AsyncGenerator[Event, None]
    _assemblers: list[ChoiceAssembler]
    _on_done: Callable[[ChatUsage], None]
    usage: ChatUsage | None = None
    _completion_tokens: int = field(default=0)
    _moderator: ModerationEngine | None = None  # moderates the output (safety/runtime.py), when on
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
        await self._events.aclose()


class ChatService:
    def __init__(
        self,
        *,
        engine: Callable[[], InferenceEngine],
        resolve_servable: Callable[[str, str], ServableModel],
        limits: SpendGate,
        usage: InferenceMeter,
        metrics: ServingMetrics,
        moderation: Callable[[], ModerationEngine],
        catalog: Catalog,
        settings: Settings,
        db: Database,
    ) -> None:
        self.engine = engine  # created on first use (it may load torch): called in a thread
        self.resolve_servable = resolve_servable
        self.limits = limits
        self.usage = usage
        self.metrics = metrics
        self.moderation = moderation  # built on first use: only organisations that switched it on
        self.catalog = catalog
        self.settings = settings
        self.db = db

    # --- public --------------------------------------------------------------------------

    async def complete(self, who: Principal, request: ChatRequest) -> ChatCompletion:
        started = time.monotonic()
        try:
            return await self._complete(who, request, started)
        except Exception:
            self.metrics.failed(self._model_label(request))
            raise

    async def _complete(self, who: Principal, request: ChatRequest, started: float) -> ChatCompletion:
        await asyncio.to_thread(self.limits.check_chat_allowed, who)
        prepared = await self.prepare(who.org_id, request)
        moderator = await self._moderate_input(who.org_id, prepared)
        engine = await asyncio.to_thread(self.engine)
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
        return ChatCompletion(completion_id, int(self.db.now()), prepared.servable.name, choices, usage)

    async def open_stream(self, who: Principal, request: ChatRequest) -> ChatStream:
        started = time.monotonic()
        try:
            return await self._open_stream(who, request, started)
        except Exception:
            self.metrics.failed(self._model_label(request))
            raise

    async def _open_stream(self, who: Principal, request: ChatRequest, started: float) -> ChatStream:
        await asyncio.to_thread(self.limits.check_chat_allowed, who)
        prepared = await self.prepare(who.org_id, request)
        moderator = await self._moderate_input(who.org_id, prepared)
        engine = await asyncio.to_thread(self.engine)
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
            created=int(self.db.now()),
            model=servable.name,
            include_usage=prepared.include_usage,
            prompt_tokens=first.prompt_tokens,
            _events=events,
            _assemblers=[ChoiceAssembler(i, prepared.tool_mode, params.logprobs) for i in range(params.n)],
            _on_done=lambda usage: self._record(who, completion_id, servable, usage, started),
            _moderator=moderator,
            _window=self.settings.moderation_stream_window_chars,
        )

    async def prepare(self, org_id: str, request: ChatRequest) -> PreparedChat:
        """Compile any grammar, then resolve the model (in threads: both may take a while)."""
        plan = _tools(request)
        reply = _reply_format(request.response_format, plan.mode)
        constraint = None
        if plan.forced or reply.schema is not None:  # compiling takes a while: off the event loop
            constraint = await asyncio.to_thread(_constraint, plan, reply)
        servable = await asyncio.to_thread(self.resolve_servable, org_id, request.model)
        entry = self.catalog.get(servable.base_id)
        generation = GenerationRequest(
            base_path=servable.base_path,
            adapter_path=servable.adapter_path,
            messages=[dict(m) for m in request.messages],
            tools=plan.tools,
            params=request.params,
            context_length=entry.context_length if entry is not None else None,
            response_prefix=plan.prefix or reply.prefix,
            constraint=constraint,
        )
        return PreparedChat(servable, generation, plan.mode, request.stream, request.include_usage)

    async def _moderate_input(self, org_id: str, prepared: PreparedChat) -> ModerationEngine | None:
        """With the organisation's runtime moderation on: refuse flagged input (400), and return
        the moderation engine for the output; None when it is off."""
        if not await asyncio.to_thread(org_settings.runtime_moderation, self.db, org_id):
            return None
        moderator = await asyncio.to_thread(self.moderation)
        await asyncio.to_thread(runtime.check_input, moderator, prepared.generation.messages)
        return moderator

    def _model_label(self, request: ChatRequest) -> str:
        """A failed request's label: a catalogue id, else "other" (callers must not mint labels)."""
        return request.model if self.catalog.get(request.model) is not None else "other"

    def _record(
        self, who: Principal, completion_id: str, servable: ServableModel, usage: ChatUsage, started: float
    ) -> None:
        """Meter the completion once (keyed by its id) at its base model's inference prices."""
        self.metrics.completed(
            servable.name, usage.prompt_tokens, usage.completion_tokens, time.monotonic() - started
        )
        try:
            self.usage.record_inference(
                who,
                completion_id,
                servable.name,
                servable.base_id,
                usage.prompt_tokens,
                usage.completion_tokens,
            )
        except Exception:  # metering must never break a completion already produced
            log.exception("metering completion %s failed", completion_id)


def _filter_choices(moderator: ModerationEngine, choices: list[ChatChoice]) -> None:
    """Withhold each flagged choice: no content, finish reason ``content_filter`` (billed as generated)."""
    for c in choices:
        if runtime.output_flagged(moderator, runtime.output_text(c.content, c.tool_calls, c.function_call)):
            c.content, c.tool_calls, c.function_call, c.logprobs = None, None, None, None
            c.finish_reason = runtime.CONTENT_FILTER


# --- what the request's tools and format mean for the reply -----------------------------------


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


def _tools(request: ChatRequest) -> ToolPlan:
    """The tools for the prompt, how to read calls back, any forced reply prefix and which calls
    the grammar must force (``tool_choice`` "required" or a named function)."""
    choice, legacy = request.tool_choice, request.legacy_functions
    if request.tools is None or choice.kind == "none":
        return ToolPlan(None, ToolMode())
    functions = []
    for i, tool in enumerate(request.tools):
        fn = tool["function"]
        where = f"functions[{i}].parameters" if legacy else f"tools[{i}].function.parameters"
        functions.append(FunctionSpec(str(fn["name"]), fn.get("parameters"), bool(fn.get("strict")), where))
    tools = request.tools
    mode = ToolMode(parse=True, legacy_functions=legacy, parallel=request.parallel_tool_calls)
    if choice.kind == "auto":
        return ToolPlan(tools, mode, functions=tuple(functions))
    if choice.kind == "required":
        return ToolPlan(tools, mode, '<tool_call>\n{"name": "', tuple(functions), tuple(functions))
    named = tuple(f for f in functions if f.name == choice.name)
    prefix = '<tool_call>\n{"name": ' + json.dumps(choice.name) + ', "arguments": '
    return ToolPlan(tools, mode, prefix, tuple(functions), named[:1])


def _reply_format(fmt: ResponseFormat, mode: ToolMode) -> ReplyFormat:
    """JSON mode: the reply is grammar-constrained to a JSON object, or to the given JSON Schema."""
    if fmt.kind == "json_object":
        return ReplyFormat("" if mode.parse else "{", dict(grammar.ANY_OBJECT))
    if fmt.kind != "json_schema":
        return ReplyFormat()
    schema = grammar.ANY_OBJECT if fmt.schema is None else fmt.schema
    opens_object = schema.get("type") == "object" and not mode.parse
    param = "response_format.json_schema.schema"
    return ReplyFormat("{" if opens_object else "", dict(schema), fmt.strict, param)


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

"""The Responses API (``/v1/responses``) as a translation onto chat completions.

A checked :class:`ResponseRequest` (``api/schemas/responses.py`` builds it from the wire) becomes
chat messages — the items of the conversation so far (``previous_response_id``), then the request's
input items, after its ``instructions`` as a system message — and one
:class:`~afinar.services.chat.ChatRequest`. The chat service then does everything a completion
does: model access and isolation, spend limits, runtime moderation, the engine, metering (keyed
by the completion's id). This module only turns the chat reply back into output items — a
``message`` with one ``output_text`` part, then one ``function_call`` item per tool call — and, when
``store`` is true, keeps the response (sealed, store/responses.py) for retrieval and for later
responses that continue it. Items carry OpenAI's ids: ``msg_``, ``fc_``, ``fco_``; responses ``resp_``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from afinar import ids
from afinar.errors import NotFound
from afinar.inference.assemble import ChoiceDelta
from afinar.inference.types import SamplingParams
from afinar.services.chat import ChatRequest, ChatStream, ChatUsage, ResponseFormat, ToolChoice
from afinar.store import responses as repo
from afinar.store.tables import StoredResponse

if TYPE_CHECKING:
    from afinar.services.chat import ChatService
    from afinar.services.orgs import Principal
    from afinar.store.db import Database

# Why a response stopped short, by the chat finish reason that says so.
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


@dataclass(frozen=True)
class ResponseRequest:
    """A checked ``POST /v1/responses`` request.

    ``input_items`` are normalised items without ids (``message`` with a content part list,
    ``function_call``, ``function_call_output``); ``tools`` are Responses function tools
    (``{"type": "function", "name", ...}``); ``settings`` are the request's fields echoed on the
    response object (instructions, metadata, tools, tool_choice, text, sampling, user...).
    """

    model: str
    input_items: list[dict[str, Any]]
    instructions: str | None = None
    params: SamplingParams = field(default_factory=SamplingParams)
    tools: list[dict[str, Any]] | None = None
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    parallel_tool_calls: bool = True
    text_format: ResponseFormat = field(default_factory=ResponseFormat)
    store: bool = True
    previous_response_id: str | None = None
    stream: bool = False
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class ResponseRecord:
    """A response, finished or (while streaming) in progress."""

    id: str
    created_at: int
    model: str
    settings: dict[str, Any]
    previous_response_id: str | None
    store: bool
    status: str = "in_progress"  # in_progress | completed | incomplete
    incomplete_reason: str | None = None
    completed_at: int | None = None
    output: list[dict[str, Any]] = field(default_factory=list)
    usage: ChatUsage | None = None


# --- what a stream produces, item by item -----------------------------------------------------


@dataclass(frozen=True)
class ItemAdded:
    output_index: int
    item: dict[str, Any]  # as it starts: in progress, no text or arguments yet


@dataclass(frozen=True)
class TextAdded:
    output_index: int
    item_id: str
    text: str


@dataclass(frozen=True)
class ArgumentsAdded:
    output_index: int
    item_id: str
    arguments: str


@dataclass(frozen=True)
class ItemDone:
    output_index: int
    item: dict[str, Any]  # final


Step = ItemAdded | TextAdded | ArgumentsAdded | ItemDone


class OutputAssembler:
    """Chat deltas of one choice in, output items and the steps that build them out."""

    def __init__(self) -> None:
        self.output: list[dict[str, Any]] = []
        self.finish_reason = "stop"
        self._message: dict[str, Any] | None = None  # the open message item
        self._text: list[str] = []

    def feed(self, d: ChoiceDelta) -> list[Step]:
        steps: list[Step] = []
        if d.content:
            if self._message is None:
                steps.append(self._open_message())
            self._text.append(d.content)
            steps.append(TextAdded(len(self.output) - 1, self._message_id(), d.content))
        for call in d.tool_calls or []:
            steps += self._close_message()
            fn = call["function"]
            item = {
                "id": ids.new_id("fc_"),
                "type": "function_call",
                "call_id": call["id"],
                "name": fn["name"],
                "arguments": fn["arguments"],
                "status": "completed",
            }
            self.output.append(item)
            at = len(self.output) - 1
            steps += [
                ItemAdded(at, {**item, "arguments": "", "status": "in_progress"}),
                ArgumentsAdded(at, item["id"], item["arguments"]),
                ItemDone(at, dict(item)),
            ]
        if d.finish_reason:
            self.finish_reason = d.finish_reason
        return steps

    def finish(self) -> list[Step]:
        """Close the open message; a reply with nothing at all still has an (empty) message."""
        steps: list[Step] = []
        if not self.output:
            steps.append(self._open_message())
        return steps + self._close_message()

    @property
    def status(self) -> tuple[str, str | None]:
        reason = INCOMPLETE.get(self.finish_reason)
        return ("incomplete" if reason else "completed"), reason

    def _open_message(self) -> ItemAdded:
        self._message = message_item(ids.new_id("msg_"), "assistant", [], status="in_progress")
        self._text = []
        self.output.append(self._message)
        return ItemAdded(len(self.output) - 1, {**self._message, "content": []})

    def _message_id(self) -> str:
        assert self._message is not None
        return str(self._message["id"])

    def _close_message(self) -> list[Step]:
        if self._message is None:
            return []
        message, self._message = self._message, None
        message["content"] = [output_text("".join(self._text))]
        message["status"] = "incomplete" if self.finish_reason in INCOMPLETE else "completed"
        return [ItemDone(self.output.index(message), dict(message))]


def replay_steps(output: list[dict[str, Any]]) -> list[Step]:
    """The steps that build ``output`` again, one text or arguments step per item."""
    steps: list[Step] = []
    for at, item in enumerate(output):
        if item["type"] == "message":
            steps.append(ItemAdded(at, {**item, "content": [], "status": "in_progress"}))
            steps.append(TextAdded(at, item["id"], "".join(p.get("text", "") for p in item["content"])))
        else:
            steps.append(ItemAdded(at, {**item, "arguments": "", "status": "in_progress"}))
            steps.append(ArgumentsAdded(at, item["id"], item["arguments"]))
        steps.append(ItemDone(at, item))
    return steps


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(
    item_id: str, role: str, content: list[dict[str, Any]], status: str = "completed"
) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": role, "content": content, "status": status}


# --- items as chat messages -------------------------------------------------------------------


def part_text(content: Any) -> str:
    """The text of a message's content (a string, or text parts of any kind)."""
    if isinstance(content, str):
        return content
    return "".join(str(p.get("text") or p.get("refusal") or "") for p in content or [] if isinstance(p, dict))


def chat_messages(instructions: str | None, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chat messages that say what ``items`` say: function calls join the assistant turn
    before them (or open one); their outputs are ``tool`` messages."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": instructions}] if instructions else []
    for item in items:
        kind = item["type"]
        if kind == "message":
            messages.append({"role": item["role"], "content": part_text(item["content"])})
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
                last["content"] = last.get("content") or None
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            content = part_text(item["output"])
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": content})
    return messages


def chat_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Responses function tools in chat's shape (``{"type": "function", "function": {...}}``)."""
    if not tools:
        return None
    out = []
    for tool in tools:
        fn = {"name": tool["name"]}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                fn[key] = tool[key]
        out.append({"type": "function", "function": fn})
    return out


ITEM_PREFIX = {"message": "msg_", "function_call": "fc_", "function_call_output": "fco_"}


def with_ids(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each input item with an id (its own, or a new one) and a status, as input_items lists them."""
    return [
        {"id": item.get("id") or ids.new_id(ITEM_PREFIX[item["type"]]), **item, "status": "completed"}
        for item in items
    ]


# --- the service ------------------------------------------------------------------------------


@dataclass
class ResponseStream:
    """An accepted streaming response: iterate ``steps()``; ``record`` is final at the end."""

    record: ResponseRecord
    _chat: ChatStream
    _finish: Callable[[ResponseRecord, OutputAssembler, ChatUsage | None], None]  # stores it, if asked

    async def steps(self) -> AsyncIterator[Step]:
        assembler = OutputAssembler()
        async for d in self._chat.deltas():
            for step in assembler.feed(d):
                yield step
        for step in assembler.finish():
            yield step
        await asyncio.to_thread(self._finish, self.record, assembler, self._chat.usage)

    async def aclose(self) -> None:
        await self._chat.aclose()


@dataclass(frozen=True)
class ItemsPage:
    items: list[dict[str, Any]]
    has_more: bool


class ResponsesService:
    def __init__(self, *, db: Database, chat: ChatService) -> None:
        self.db = db
        self.chat = chat

    async def create(self, who: Principal, request: ResponseRequest) -> ResponseRecord:
        record, chat_request, items, context = await asyncio.to_thread(self._start, who, request)
        completion = await self.chat.complete(who, chat_request)
        choice = completion.choices[0]
        assembler = OutputAssembler()
        assembler.feed(
            ChoiceDelta(
                0, content=choice.content, tool_calls=choice.tool_calls, finish_reason=choice.finish_reason
            )
        )
        assembler.finish()
        await asyncio.to_thread(self._end, who, record, assembler, completion.usage, items, context)
        return record

    async def open_stream(self, who: Principal, request: ResponseRequest) -> ResponseStream:
        """Start a streamed response; every refusal is raised here, before any byte is sent."""
        record, chat_request, items, context = await asyncio.to_thread(self._start, who, request)
        chat = await self.chat.open_stream(who, chat_request)

        def finish(record: ResponseRecord, assembler: OutputAssembler, usage: ChatUsage | None) -> None:
            self._end(who, record, assembler, usage or ChatUsage(chat.prompt_tokens, 0), items, context)

        return ResponseStream(record, chat, finish)

    def retrieve(self, who: Principal, response_id: str) -> ResponseRecord:
        with self.db.session() as s:
            return _record(self._stored(s, who, response_id))

    def delete(self, who: Principal, response_id: str) -> None:
        with self.db.session() as s:
            if not repo.remove(s, who.org_id, who.project_id, response_id):
                raise _not_found(response_id)

    def input_items(
        self, who: Principal, response_id: str, *, after: str | None, limit: int, desc: bool
    ) -> ItemsPage:
        with self.db.session() as s:
            items = list(self._stored(s, who, response_id).input_items)
        if desc:
            items.reverse()
        if after:
            at = next((i for i, item in enumerate(items) if item.get("id") == after), None)
            items = items[at + 1 :] if at is not None else items
        return ItemsPage(items[:limit], len(items) > limit)

    # --- steps ---------------------------------------------------------------------------------

    def _start(
        self, who: Principal, request: ResponseRequest
    ) -> tuple[ResponseRecord, ChatRequest, list[dict[str, Any]], list[dict[str, Any]]]:
        """The record in progress, its chat request, its input items and the conversation before them."""
        context: list[dict[str, Any]] = []
        if request.previous_response_id is not None:
            with self.db.session() as s:
                previous = repo.get(s, who.org_id, who.project_id, request.previous_response_id)
                if previous is None:
                    raise _not_found(request.previous_response_id, param="previous_response_id")
                context = [*previous.context_items, *previous.input_items, *previous.output]
        items = with_ids(request.input_items)
        chat_request = ChatRequest(
            model=request.model,
            messages=chat_messages(request.instructions, [*context, *items]),
            params=replace(request.params, n=1),
            tools=chat_tools(request.tools),
            tool_choice=request.tool_choice if request.tools else ToolChoice("none"),
            parallel_tool_calls=request.parallel_tool_calls,
            response_format=request.text_format,
            stream=request.stream,
        )
        record = ResponseRecord(
            id=ids.new_id("resp_", 40),
            created_at=int(self.db.now()),
            model=request.model,
            settings=request.settings,
            previous_response_id=request.previous_response_id,
            store=request.store,
        )
        return record, chat_request, items, context

    def _end(
        self,
        who: Principal,
        record: ResponseRecord,
        assembler: OutputAssembler,
        usage: ChatUsage | None,
        items: list[dict[str, Any]],
        context: list[dict[str, Any]],
    ) -> None:
        """Finish the record from the chat reply, and keep it when ``store`` asked for that."""
        record.output = assembler.output
        record.status, record.incomplete_reason = assembler.status
        record.usage = usage
        record.completed_at = int(self.db.now())
        if not record.store:
            return
        with self.db.session() as s:
            repo.add(
                s,
                StoredResponse(
                    id=record.id,
                    org_id=who.org_id,
                    project_id=who.project_id,
                    api_key_id=who.key_id,
                    model=record.model,
                    status=record.status,
                    incomplete_reason=record.incomplete_reason,
                    previous_response_id=record.previous_response_id,
                    created_at=record.created_at,
                    completed_at=record.completed_at,
                    settings=record.settings,
                    input_items=items,
                    context_items=context,
                    output=record.output,
                    usage=_usage_counts(usage),
                ),
            )

    def _stored(self, s: Any, who: Principal, response_id: str) -> StoredResponse:
        row = repo.get(s, who.org_id, who.project_id, response_id)
        if row is None:
            raise _not_found(response_id)
        return row


def _usage_counts(usage: ChatUsage | None) -> dict[str, int]:
    if usage is None:
        return {}
    return {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens}


def _record(row: StoredResponse) -> ResponseRecord:
    counts = row.usage or {}
    usage = ChatUsage(counts["input_tokens"], counts["output_tokens"]) if counts else None
    return ResponseRecord(
        id=row.id,
        created_at=row.created_at,
        model=row.model,
        settings=dict(row.settings),
        previous_response_id=row.previous_response_id,
        store=True,
        status=row.status,
        incomplete_reason=row.incomplete_reason,
        completed_at=row.completed_at,
        output=list(row.output),
        usage=usage,
    )


def _not_found(response_id: str, param: str | None = None) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param=param)

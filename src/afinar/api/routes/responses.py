"""``/v1/responses`` (the official SDK's ``client.responses``): create (JSON or typed server-sent
events), retrieve, delete, and a stored response's input items.

Errors found before streaming (bad fields, unknown model or previous response, spend limit,
flagged input) are ordinary JSON errors: the service returns a stream only once the engine has
accepted the request. An error after the first byte is an ``error`` event, and the stream ends.
Each event goes out as ``event: <type>`` plus ``data: <json>``, as OpenAI sends them; there is no
``[DONE]`` line on this API. A create honours ``Idempotency-Key`` (api/idempotency.py): a streamed
create that finished is replayed as the events of the same response (its text in one delta); one
that broke off gives its key back, so a retry runs again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from afinar.api.deps import get_container, get_principal, json_body, parse_body
from afinar.api.idempotency import REPLAYED_HEADER, Idempotency, fingerprint, idempotency
from afinar.api.routes.chat import SSE_HEADERS
from afinar.api.schemas.responses import (
    ResponseCreateRequest,
    StreamEvents,
    deleted_object,
    items_list,
    response_object,
)
from afinar.errors import AfinarError, InvalidRequest, ServerError
from afinar.services.container import Container
from afinar.services.orgs import Principal
from afinar.services.responses import ResponseStream

log = logging.getLogger(__name__)
router = APIRouter(tags=["responses"])

MAX_ITEMS_PAGE = 100


@router.post("/responses", response_model=None)
async def create_response(
    body: dict[str, Any] = Depends(json_body),
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
    idem: Idempotency = Depends(idempotency),
) -> dict[str, Any] | StreamingResponse:
    key = fingerprint(body)
    earlier = await run_in_threadpool(idem.start, key)
    if earlier is not None:
        answer = idem.replay(earlier, key)
        if body.get("stream") is True and earlier.status_code == 200:
            replayed = (_event(e) for e in StreamEvents().replay(answer))
            return _streaming(replayed, {REPLAYED_HEADER: "true"})
        return answer
    try:
        request = parse_body(ResponseCreateRequest, body).to_domain()
        if request.stream:
            stream = await c.responses.open_stream(p, request)
            return _streaming(_sse(stream, idem, key))
        answer = response_object(await c.responses.create(p, request))
    except BaseException as exc:
        await run_in_threadpool(idem.fail, exc, key)
        raise
    await run_in_threadpool(idem.finish, key, answer)
    return answer


@router.get("/responses/{response_id}")
def retrieve_response(
    response_id: str,
    stream: bool = False,
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
) -> dict[str, Any]:
    if stream:
        raise InvalidRequest(
            "Streaming a stored response again is not supported: retrieve it without 'stream'.",
            param="stream",
            code="unsupported_parameter",
        )
    return response_object(c.responses.retrieve(p, response_id))


@router.delete("/responses/{response_id}")
def delete_response(
    response_id: str, p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> dict[str, Any]:
    c.responses.delete(p, response_id)
    return deleted_object(response_id)


@router.get("/responses/{response_id}/input_items")
def list_input_items(
    response_id: str,
    after: str | None = None,
    limit: int = 20,
    order: str = "desc",
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
) -> dict[str, Any]:
    if not 1 <= limit <= MAX_ITEMS_PAGE:
        raise InvalidRequest(f"'limit' must be between 1 and {MAX_ITEMS_PAGE}.", param="limit")
    if order not in ("asc", "desc"):
        raise InvalidRequest(f"Invalid value for 'order': {order!r}; use 'asc' or 'desc'.", param="order")
    page = c.responses.input_items(p, response_id, after=after, limit=limit, desc=order == "desc")
    return items_list(page.items, page.has_more)


def _event(data: dict[str, Any]) -> str:
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {data['type']}\ndata: {payload}\n\n"


def _streaming(
    events: Iterable[str] | AsyncIterator[str], headers: dict[str, str] | None = None
) -> StreamingResponse:
    return StreamingResponse(
        events, media_type="text/event-stream", headers={**(headers or {}), **SSE_HEADERS}
    )


async def _sse(stream: ResponseStream, idem: Idempotency, key: str) -> AsyncIterator[str]:
    """The stream's events; its final response becomes the Idempotency-Key's answer (if any). A
    stream that does not finish gives the key back, so a retry runs again."""
    events = StreamEvents()
    finished = False
    try:
        for event in events.opening(response_object(stream.record)):
            yield _event(event)
        async for step in stream.steps():
            for event in events.step(step):
                yield _event(event)
        final = response_object(stream.record)
        await run_in_threadpool(idem.finish, key, final)
        finished = True
        yield _event(events.closing(final))
    except AfinarError as exc:
        yield _event(events.error(exc))
    except Exception:
        log.exception("response stream failed")
        yield _event(events.error(None))
    finally:
        if not finished:
            idem.fail(ServerError("The response stream did not finish."), key)  # releases the key
        await stream.aclose()

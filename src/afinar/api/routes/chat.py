"""``POST /v1/chat/completions``: JSON or server-sent events, exactly as the OpenAI SDK expects.

Errors found before streaming (bad fields, unknown model, a full queue, a prompt over the
context) are ordinary JSON errors, because the service only returns a stream once the engine has
accepted the request. An error after the first byte goes out as ``data: {"error": {...}}``,
which the SDK raises as ``APIError``; the stream then ends without ``[DONE]``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, StreamingResponse

from afinar.api.deps import get_container, get_principal
from afinar.api.errors import envelope
from afinar.api.schemas.chat import (
    ChatCompletionRequest,
    chunk_body,
    chunk_choice,
    completion_object,
    usage_body,
)
from afinar.errors import AfinarError
from afinar.services.chat import ChatStream
from afinar.services.container import Container
from afinar.services.orgs import Principal

log = logging.getLogger(__name__)
router = APIRouter(tags=["chat"])

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.post("/chat/completions", response_model=None)
async def create_chat_completion(
    body: ChatCompletionRequest,
    container: Container = Depends(get_container),
    principal: Principal = Depends(get_principal),
) -> JSONResponse | StreamingResponse:
    request = body.to_domain()  # checked by the model's validators (FastAPI parsed the body)
    if request.stream:
        stream = await container.chat.open_stream(principal, request)
        return StreamingResponse(_sse(stream), media_type="text/event-stream", headers=SSE_HEADERS)
    result = await container.chat.complete(principal, request)
    return JSONResponse(completion_object(result))


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


async def _sse(stream: ChatStream) -> AsyncIterator[str]:
    def chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> str:
        return _event(
            chunk_body(
                stream.id,
                stream.created,
                stream.model,
                choices,
                include_usage=stream.include_usage,
                usage=usage,
            )
        )

    try:
        async for d in stream.deltas():
            yield chunk([chunk_choice(d.index, d.delta(), d.finish_reason, d.logprobs)])
        if stream.include_usage and stream.usage is not None:
            usage = stream.usage
            yield chunk([], usage_body(usage.prompt_tokens, usage.completion_tokens))
        yield "data: [DONE]\n\n"
    except AfinarError as exc:
        yield _event(envelope(exc.message, exc.type, exc.param, exc.code))
    except Exception:
        log.exception("chat completion stream failed")
        yield _event(envelope("The server had an error while processing your request.", "server_error"))
    finally:
        await stream.aclose()

"""Playground: one prompt to two models side by side, streamed (with a no-JavaScript fallback)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from afinar.api.deps import parse_body
from afinar.api.errors import status_for
from afinar.api.schemas.chat import ChatCompletionRequest
from afinar.dashboard import modelcard
from afinar.dashboard.deps import DashboardRoute, Viewer, checked_viewer, container, page, viewer
from afinar.errors import AfinarError, InvalidRequest
from afinar.services.chat import ChatRequest, ChatStream
from afinar.services.container import Container

log = logging.getLogger(__name__)
router = APIRouter(route_class=DashboardRoute, include_in_schema=False)
MAX_TOKENS_LIMIT = 2048


def chat_request(data: dict[str, Any], model: str, *, stream: bool) -> ChatRequest:
    """The form as a chat completion request, checked as the API checks one."""
    return parse_body(ChatCompletionRequest, chat_body(data, model, stream=stream)).to_domain()


def chat_body(data: dict[str, Any], model: str, *, stream: bool) -> dict[str, Any]:
    prompt = str(data.get("prompt") or "").strip()
    if not prompt:
        raise InvalidRequest("Write a prompt first.", param="prompt")
    messages = []
    system = str(data.get("system") or "").strip()
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": prompt})
    try:
        max_tokens = min(MAX_TOKENS_LIMIT, max(1, int(data.get("max_tokens") or 128)))
        temperature = min(2.0, max(0.0, float(data.get("temperature") or 0.0)))
    except (TypeError, ValueError):
        raise InvalidRequest("Max tokens and temperature must be numbers.", param="max_tokens") from None
    return {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stream": stream,
    }


def _choices(c: Container, v: Viewer, wanted: str | None) -> dict[str, Any]:
    rows = modelcard.rows(c.models.list(v.org_id, v.principal.org_slug))
    tuned = [r for r in rows if r.kind != "base"]
    right = wanted if wanted in {r.id for r in rows} else (tuned[-1].id if tuned else rows[0].id)
    left_base = next(r.base for r in rows if r.id == right)
    left = left_base if c.catalog.get(left_base) else rows[0].id
    return {"models": rows, "left": left, "right": right}


@router.get("/playground")
def playground(request: Request, model: str | None = None, v: Viewer = Depends(viewer)) -> Response:
    choices = _choices(container(request), v, model)
    return page(
        request,
        "playground.html",
        viewer=v,
        form={"max_tokens": 128, "temperature": 0},
        answers={},
        **choices,
    )


@router.post("/playground")
async def playground_submit(request: Request, v: Viewer = Depends(checked_viewer)) -> Response:
    """Without JavaScript: run both completions, then render them."""
    c = container(request)
    form = dict(await request.form())
    answers: dict[str, str] = {}
    for side in ("left", "right"):
        try:
            chat = chat_request(form, str(form.get(side) or ""), stream=False)
            result = await c.chat.complete(v.principal, chat)
            answers[side] = result.choices[0].content or ""
        except AfinarError as exc:
            answers[side] = f"Error: {exc.message}"
    choices = _choices(c, v, str(form.get("right") or ""))
    choices["left"] = str(form.get("left") or choices["left"])
    return page(request, "playground.html", viewer=v, form=form, answers=answers, **choices)


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False) + "\n").encode()


async def _ndjson(stream: ChatStream) -> AsyncIterator[bytes]:
    finish = None
    try:
        async for d in stream.deltas():
            if d.content:
                yield _line({"type": "delta", "text": d.content})
            finish = d.finish_reason or finish
        usage = stream.usage
        yield _line(
            {
                "type": "done",
                "finish_reason": finish,
                "completion_tokens": usage.completion_tokens if usage else None,
            }
        )
    except AfinarError as exc:
        yield _line({"type": "error", "message": exc.message})
    except (asyncio.CancelledError, GeneratorExit):
        raise
    except Exception:
        log.exception("playground stream failed")
        yield _line({"type": "error", "message": "The server had an error while answering."})
    finally:
        await stream.aclose()


@router.post("/playground/stream")
async def playground_stream(request: Request, v: Viewer = Depends(checked_viewer)) -> Response:
    """One side of the playground, as newline-delimited JSON: deltas, then ``done`` or ``error``."""
    try:
        data = await request.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return JSONResponse({"error": "Send a JSON object."}, 400)
    try:
        chat = chat_request(data, str(data.get("model") or ""), stream=True)
        stream = await container(request).chat.open_stream(v.principal, chat)
    except AfinarError as exc:
        return JSONResponse({"error": exc.message}, status_for(exc))
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(_ndjson(stream), media_type="application/x-ndjson", headers=headers)

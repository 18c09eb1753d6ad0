"""``/v1/moderations``: OpenAI's moderation endpoint over the operator's moderation backend."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from afinar.api.deps import get_container, get_principal, json_body
from afinar.api.schemas.moderations import moderation_object, parse_request
from afinar.errors import ServerError
from afinar.safety.moderation import ModerationEngine, build_moderation_engine
from afinar.services.container import Container
from afinar.services.orgs import Principal

router = APIRouter(tags=["moderations"])
_build_lock = threading.Lock()



def moderation_engine(request: Request, container: Container) -> ModerationEngine:
    """The container's engine when it has one, else one built from settings and kept on the app."""
    engine = getattr(container, "moderation", None)
    if isinstance(engine, ModerationEngine):
        return engine
    with _build_lock:
        engine = getattr(request.app.state, "moderation", None)
        if engine is None:
            try:
                engine = build_moderation_engine(container.settings, container)
            except ValueError as exc:
                raise ServerError(f"Moderation is misconfigured on this server: {exc}") from None
            request.app.state.moderation = engine
        return engine


@router.post("/moderations")
async def create_moderation(
    request: Request,
    body: dict[str, Any] = Depends(json_body),
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
) -> dict[str, Any]:
    texts, model = parse_request(body)
    engine = moderation_engine(request, c)
    results = await run_in_threadpool(engine.moderate, texts)
    return moderation_object(model, results)

"""``/v1/moderations``: OpenAI's moderation endpoint over the operator's moderation backend."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from afinar.api.deps import get_container, get_principal, json_body, parse_body
from afinar.api.schemas.moderations import CreateModerationRequest, moderation_object
from afinar.errors import ServerError
from afinar.safety.moderation import ModerationEngine
from afinar.services.container import Container
from afinar.services.orgs import Principal

router = APIRouter(tags=["moderations"])


def moderation_engine(container: Container) -> ModerationEngine:
    """The container's moderation engine; settings that name no usable backend are a 500."""
    try:
        return container.moderation
    except ValueError as exc:
        raise ServerError(f"Moderation is misconfigured on this server: {exc}") from None


@router.post("/moderations")
async def create_moderation(
    body: dict[str, Any] = Depends(json_body),
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
) -> dict[str, Any]:
    request = parse_body(CreateModerationRequest, body).to_domain()
    engine = moderation_engine(c)
    results = await run_in_threadpool(engine.moderate, request.texts)
    return moderation_object(request.model, results)

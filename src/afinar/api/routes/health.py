from __future__ import annotations

import hmac
import threading
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from afinar.api.errors import ERROR_SCHEMA, envelope
from afinar.errors import AuthenticationFailed
from afinar.services.metrics import CONTENT_TYPE

router = APIRouter()


CHECK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"type": "string"}, "reason": {"type": "string"}},
}
CHECKS_SCHEMA: dict[str, Any] = {"type": "object", "additionalProperties": CHECK_SCHEMA}
NOT_READY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "status", "checks"],
    "properties": {
        **ERROR_SCHEMA["properties"],
        "status": {"type": "string", "enum": ["not_ready"]},
        "checks": CHECKS_SCHEMA,
    },
}


@router.get("/health")
def health() -> dict[str, str]:
    """Liveness: the process answers (before the ML stack is imported, too). No authentication."""
    return {"status": "ok"}


@router.get(
    "/ready",
    responses={
        200: {
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["status", "checks"],
                        "properties": {
                            "status": {"type": "string", "enum": ["ready"]},
                            "checks": CHECKS_SCHEMA,
                        },
                    }
                }
            }
        },
        503: {"content": {"application/json": {"schema": NOT_READY_SCHEMA}}},
    },
)
def ready(request: Request) -> JSONResponse:
    """Readiness: the database and the blob store answer and the ML stack is imported (checked
    without waiting for it). 200 ``{"status": "ready", "checks": …}``, or 503 with the failing
    components in OpenAI's error envelope plus the checks. No authentication, nothing secret."""
    gate: threading.Event | None = getattr(request.app.state, "ml_stack_ready", None)
    result = request.app.state.container.readiness.check(ml_stack_ready=gate is None or gate.is_set())
    checks = {name: c.to_json() for name, c in result.checks.items()}
    if result.ready:
        return JSONResponse({"status": "ready", "checks": checks})
    failing = sorted(result.failing)
    code = f"{failing[0]}_unavailable" if len(failing) == 1 else "not_ready"
    body = envelope(result.message(), "server_error", None, code) | {"status": "not_ready", "checks": checks}
    return JSONResponse(body, 503, headers={"retry-after": "5", "cache-control": "no-store"})


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus scrape endpoint (``AFINAR_METRICS_TOKEN`` protects it when set)."""
    c = request.app.state.container
    token = c.settings.metrics_token
    if token and not hmac.compare_digest(request.headers.get("authorization", ""), f"Bearer {token}"):
        raise AuthenticationFailed("GET /metrics needs 'Authorization: Bearer <AFINAR_METRICS_TOKEN>'.")
    return Response(c.metrics.render(), media_type=CONTENT_TYPE)

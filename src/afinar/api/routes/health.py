from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response

from afinar.errors import AuthenticationFailed
from afinar.services.metrics import CONTENT_TYPE

router = APIRouter()


@router.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus scrape endpoint (``AFINAR_METRICS_TOKEN`` protects it when set)."""
    c = request.app.state.container
    token = c.settings.metrics_token
    if token and not hmac.compare_digest(request.headers.get("authorization", ""), f"Bearer {token}"):
        raise AuthenticationFailed("GET /metrics needs 'Authorization: Bearer <AFINAR_METRICS_TOKEN>'.")
    return Response(c.metrics.render(), media_type=CONTENT_TYPE)

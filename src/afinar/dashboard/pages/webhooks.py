"""Webhooks: the project's endpoints and, for each, its latest deliveries with every attempt
(the same log as ``GET /v1/afinar/webhook_endpoints/{id}/deliveries``). Endpoints are managed
through the API (``client.webhooks``); this page shows what was sent and how receivers answered."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from afinar.api.schemas.webhooks import delivery_list, endpoint
from afinar.dashboard.deps import DashboardRoute, Viewer, container, page, viewer

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)

SHOWN = 20  # endpoints, and deliveries per endpoint


@router.get("/webhooks")
def webhooks_page(request: Request, v: Viewer = Depends(viewer)) -> Response:
    svc = container(request).webhooks
    project = v.principal.project_id
    rows: list[dict[str, Any]] = []
    for ep in svc.list(v.org_id, project, after=None, limit=SHOWN).items:
        log = svc.deliveries(v.org_id, project, ep.id, after=None, limit=SHOWN)
        rows.append({**endpoint(ep), "deliveries": delivery_list(log)["data"]})
    return page(request, "webhooks.html", viewer=v, endpoints=rows)

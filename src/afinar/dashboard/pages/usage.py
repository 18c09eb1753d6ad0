"""Usage: tokens and cost per day and per model, and the free allowance left today."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from afinar.dashboard.deps import DashboardRoute, Viewer, container, page, viewer
from afinar.dashboard.usage import usage_view

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)


@router.get("/usage")
def usage_page(request: Request, v: Viewer = Depends(viewer)) -> Response:
    return page(request, "usage.html", viewer=v, usage=usage_view(container(request), v.principal))

"""The overview at ``/``: recent jobs and what to do next."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from afinar.dashboard.deps import DashboardRoute, Viewer, container, page, viewer
from afinar.dashboard.progress import progress

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)


@router.get("/")
def home(request: Request, v: Viewer = Depends(viewer)) -> Response:
    c = container(request)
    jobs = c.jobs.list(v.org_id, after=None, limit=5, metadata=None, no_metadata=False).items
    files = c.files.list(v.org_id, after=None, limit=5, order="desc", purpose="fine-tune").items
    rows = [(j, progress(j)) for j in jobs]
    return page(request, "home.html", viewer=v, rows=rows, files=files, live=False)

"""Workers (admins only): each registered worker with its devices, lanes, the jobs it holds, its
last heartbeat and its state — what ``afinar admin workers`` prints, for operators who live in the
browser. Workers serve every organisation: the page shows counts, never other tenants' job ids."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from afinar.dashboard.deps import DashboardRoute, Viewer, container, page, viewer
from afinar.domain.hardware import WorkerState, gib
from afinar.errors import PermissionDenied

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)

BADGES = {"busy": "running", "idle": "queued", "stale": "failed"}  # reuses the job status colours


def state(w: WorkerState) -> str:
    """``stale`` (no heartbeat for a few lease periods: it holds nothing any more), ``busy`` or ``idle``."""
    if not w.live:
        return "stale"
    return "busy" if w.jobs_held else "idle"


def worker_row(w: WorkerState, now: float) -> dict[str, Any]:
    d = w.devices
    return {
        "name": w.name,
        "host": w.host,
        "kind": d.kind,
        "gpu_count": d.gpu_count,
        "gpu_memory": gib(d.largest_gpu_bytes) if d.gpu_count else None,
        "devices": d.summary(),
        "lanes": ", ".join(f"{lane} {n}" for lane, n in w.lanes.items()),
        "slots": sum(w.lanes.values()),
        "jobs_held": w.jobs_held,
        "started_at": w.started_at,
        "heartbeat_at": w.heartbeat_at,
        "heartbeat_age": max(0.0, now - w.heartbeat_at),
        "state": state(w),
        "badge": BADGES[state(w)],
    }


@router.get("/workers")
def workers_page(request: Request, v: Viewer = Depends(viewer)) -> Response:
    if not v.principal.is_admin:
        raise PermissionDenied("Only an admin key sees the workers.", code="insufficient_permissions")
    c = container(request)
    now = c.db.now()
    rows = [worker_row(w, now) for w in c.workers.states()]
    rows.sort(key=lambda r: (r["state"] == "stale", r["name"]))
    return page(request, "workers.html", viewer=v, workers=rows)

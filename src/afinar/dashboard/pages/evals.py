"""Evals: the list, an eval with its runs (live while they run), and two runs compared side by side.

Read-only pages: they use the evals services the API uses (``c.evals``, ``c.eval_runs``), so the
organisation and project scope of the signed-in key apply, and the comparison is the API's own
(``c.eval_comparisons``, shaped by ``api/schemas/evals.py``'s ``comparison_object``).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from afinar.api.schemas.evals import comparison_object
from afinar.dashboard import evalview
from afinar.dashboard.deps import DashboardRoute, Viewer, container, page, viewer
from afinar.errors import InvalidRequest
from afinar.services.container import Container
from afinar.store.tables import Eval

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)


def _row(c: Container, org_id: str, ev: Eval) -> evalview.EvalRow:
    """The eval with its newest runs (newest first)."""
    runs = c.eval_runs.list_runs(
        org_id, ev.id, after=None, limit=evalview.MAX_RUNS, order="desc", status=None
    )
    return evalview.eval_row(ev, runs.items, runs.has_more)


@router.get("/evals")
def evals_page(request: Request, v: Viewer = Depends(viewer)) -> Response:
    c = container(request)
    evals = c.evals.list_evals(v.org_id, after=None, limit=100, order="desc", order_by="created_at").items
    return page(request, "evals.html", viewer=v, evals=[_row(c, v.org_id, ev) for ev in evals])


@router.get("/evals/{eval_id}")
def eval_page(request: Request, eval_id: str, v: Viewer = Depends(viewer)) -> Response:
    c = container(request)
    row = _row(c, v.org_id, c.evals.get(v.org_id, eval_id))
    live = any(r.running for r in row.runs)
    base, candidate = evalview.default_pair(row.runs)
    template = "_eval_runs.html" if request.headers.get("hx-request") == "true" else "eval.html"
    return page(request, template, viewer=v, ev=row, live=live, base=base, candidate=candidate)


@router.get("/evals/{eval_id}/compare")
def compare_page(
    request: Request,
    eval_id: str,
    base_run_id: str = "",
    candidate_run_id: str = "",
    show: str = "changed",
    v: Viewer = Depends(viewer),
) -> Response:
    c = container(request)
    if show not in evalview.SHOW:
        raise InvalidRequest(f"show must be one of {', '.join(evalview.SHOW)}", param="show")
    row = _row(c, v.org_id, c.evals.get(v.org_id, eval_id))
    if not base_run_id or not candidate_run_id:
        base, candidate = evalview.default_pair(row.runs)
        return page(
            request,
            "eval_compare.html",
            viewer=v,
            ev=row,
            report=None,
            base=base_run_id or base,
            candidate=candidate_run_id or candidate,
            show=show,
        )
    report = comparison_object(c.eval_comparisons.compare(v.org_id, eval_id, base_run_id, candidate_run_id))
    return page(
        request,
        "eval_compare.html",
        viewer=v,
        ev=row,
        report=report,
        items=evalview.shown_items(report["items"], show),
        base=base_run_id,
        candidate=candidate_run_id,
        show=show,
    )

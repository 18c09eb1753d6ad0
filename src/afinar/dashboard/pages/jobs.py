"""Jobs: the list, the create form with its live estimate, the job page with live progress."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from afinar.api.schemas.reports import estimate_object
from afinar.dashboard.deps import (
    DashboardRoute,
    Viewer,
    checked_viewer,
    container,
    default_model,
    page,
    redirect,
    viewer,
)
from afinar.dashboard.jobform import LABELS, JobForm
from afinar.dashboard.pricing import training_quote
from afinar.dashboard.progress import SHOWN_EVENTS, all_events, last_losses, progress, series
from afinar.errors import AfinarError, InvalidRequest, NotFound
from afinar.services import audit
from afinar.services.container import Container
from afinar.services.results import plain_csv

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)
ACTIONS = ("cancel", "pause", "resume")


@router.get("/jobs")
def jobs_page(request: Request, v: Viewer = Depends(viewer)) -> Response:
    jobs = (
        container(request).jobs.list(v.org_id, after=None, limit=100, metadata=None, no_metadata=False).items
    )
    rows = [(j, progress(j)) for j in jobs]
    live = any(not p.done for _, p in rows)
    template = "_jobs_table.html" if request.headers.get("hx-request") == "true" else "jobs.html"
    return page(request, template, viewer=v, rows=rows, live=live)


def _form_page(request: Request, v: Viewer, form: JobForm, error: AfinarError | None = None) -> Response:
    c = container(request)
    files = c.files.list(v.org_id, after=None, limit=200, order="desc", purpose="fine-tune").items
    field = (error.param or "").rsplit(".", 1)[-1] if error else ""
    return page(
        request,
        "job_new.html",
        400 if error else 200,
        viewer=v,
        form=form,
        files=files,
        models=c.catalog.ids(),
        labels=LABELS,
        error=error.message if error else "",
        error_field=field,
    )


@router.get("/jobs/new")
def new_job(request: Request, v: Viewer = Depends(viewer)) -> Response:
    form = JobForm.read(request.query_params)
    form.model = default_model(request, form.model)
    return _form_page(request, v, form)


@router.get("/jobs/estimate")
def estimate_fragment(request: Request, v: Viewer = Depends(viewer)) -> Response:
    c = container(request)
    form = JobForm.read(request.query_params)
    context: dict[str, Any] = {"estimate": None, "message": "", "cost": None}
    if not form.training_file or not form.model:
        context["message"] = "Choose a base model and a training file to see the estimate."
    else:
        try:
            est = estimate_object(c.reports.estimate(v.org_id, form.spec()))
            context["estimate"] = est
            if est.get("billable_tokens") is not None:
                context["cost"] = training_quote(c, v.org_id, form.model, est["billable_tokens"])
        except (InvalidRequest, NotFound) as exc:
            context["message"] = exc.message
    return page(request, "_estimate.html", viewer=v, **context)


@router.post("/jobs")
async def create_job(request: Request, v: Viewer = Depends(checked_viewer)) -> Response:
    c = container(request)
    form = JobForm.read(await request.form())
    p = v.principal
    try:
        job = c.jobs.create(p.org_id, p.org_slug, form.spec(), project_id=p.project_id, api_key_id=p.key_id)
    except InvalidRequest as exc:
        return _form_page(request, v, form, exc)
    return redirect(f"/jobs/{job.id}")


def _live_context(request: Request, v: Viewer, job_id: str) -> dict[str, Any]:
    c = container(request)
    job = c.jobs.get(v.org_id, job_id)
    events = all_events(c, v.org_id, job_id)
    points = series(events)
    train, valid = last_losses(points)
    checkpoints = c.jobs.checkpoints(v.org_id, job_id, after=None, limit=10).items
    shown = [e for e in reversed(events)][:SHOWN_EVENTS]
    return {
        "viewer": v,
        "job": job,
        "progress": progress(job),
        "events": shown,
        "n_events": len(events),
        "checkpoints": checkpoints,
        "last_train": train,
        "last_valid": valid,
        "n_points": len(points["steps"]),
        "filenames": _filenames(c, v.org_id, [job.training_file, job.validation_file]),
    }


def _filenames(c: Container, org_id: str, file_ids: list[str | None]) -> dict[str, str]:
    out = {}
    for fid in filter(None, file_ids):
        try:
            out[fid] = c.files.get(org_id, fid).filename
        except NotFound:
            out[fid] = f"{fid} (deleted)"
    return out


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str, v: Viewer = Depends(viewer)) -> Response:
    return page(request, "job.html", **_live_context(request, v, job_id))


@router.get("/jobs/{job_id}/live")
def job_live(request: Request, job_id: str, v: Viewer = Depends(viewer)) -> Response:
    return page(request, "_job_poll.html", oob=True, **_live_context(request, v, job_id))


@router.get("/jobs/{job_id}/metrics.json")
def job_metrics(request: Request, job_id: str, v: Viewer = Depends(viewer)) -> Response:
    c = container(request)
    job = c.jobs.get(v.org_id, job_id)
    data = series(all_events(c, v.org_id, job_id))
    return JSONResponse(
        {**data, "total_steps": job.total_steps, "status": job.status, "done": progress(job).done}
    )


@router.get("/jobs/{job_id}/results.csv")
def job_results(request: Request, job_id: str, v: Viewer = Depends(viewer)) -> Response:
    """The job's ``fine-tune-results`` CSV as plain text, whether the file is stored base64-encoded
    (as OpenAI serves it, the default) or plain (``AFINAR_RESULTS_CSV_BASE64=false``)."""
    c = container(request)
    job = c.jobs.get(v.org_id, job_id)
    if not job.result_files:
        raise NotFound(f"The job {job_id} has no results file yet.")
    file_id = str(job.result_files[0])
    data = plain_csv(b"".join(c.files.content(v.org_id, file_id)))
    audit.record(c.db, audit.FILE_DOWNLOADED, v.org_id, file_id, project_id=v.principal.project_id)
    return Response(
        data,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{job.id}-results.csv"'},
    )


@router.post("/jobs/{job_id}/{action}")
def job_action(request: Request, job_id: str, action: str, v: Viewer = Depends(checked_viewer)) -> Response:
    if action not in ACTIONS:
        raise NotFound(f"Unknown action: {action}")
    getattr(container(request).jobs, action)(v.org_id, job_id)
    return redirect(f"/jobs/{job_id}")

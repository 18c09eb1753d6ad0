"""Files: upload (drag and drop or picker), list, the validation report with its estimate."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from afinar.api.schemas.reports import estimate_object, file_report_object
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
from afinar.dashboard.pricing import training_quote
from afinar.domain.jobs import JobSpec
from afinar.errors import InvalidRequest

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)


def _chunks(upload: UploadFile) -> Iterator[bytes]:
    while chunk := upload.file.read(1024 * 1024):
        yield chunk


def _files_page(request: Request, v: Viewer, error: str = "", status: int = 200) -> Response:
    c = container(request)
    files = c.files.list(v.org_id, after=None, limit=200, order="desc", purpose=None).items
    return page(
        request,
        "files.html",
        status,
        viewer=v,
        files=files,
        models=c.catalog.ids(),
        model=default_model(request, request.query_params.get("model")),
        error=error,
    )


@router.get("/files")
def files_page(request: Request, v: Viewer = Depends(viewer)) -> Response:
    return _files_page(request, v)


@router.post("/files")
async def upload(request: Request, v: Viewer = Depends(checked_viewer)) -> Response:
    c = container(request)
    form = await request.form()
    upload = form.get("file")
    model = default_model(request, str(form.get("model") or ""))
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _files_page(request, v, "Choose a JSONL file to upload.", 400)
    try:
        row = await run_in_threadpool(
            c.files.create,
            v.org_id,
            upload.filename,
            "fine-tune",
            _chunks(upload),
            project_id=v.principal.project_id,
        )
    except InvalidRequest as exc:
        return _files_page(request, v, exc.message, 400)
    return redirect(f"/files/{row.id}?model={model}")


@router.get("/files/{file_id}")
def file_page(
    request: Request, file_id: str, model: str | None = None, v: Viewer = Depends(viewer)
) -> Response:
    c = container(request)
    row = c.files.get(v.org_id, file_id)
    return page(
        request, "file.html", viewer=v, file=row, models=c.catalog.ids(), model=default_model(request, model)
    )


@router.get("/files/{file_id}/report")
def file_report(
    request: Request, file_id: str, model: str | None = None, v: Viewer = Depends(viewer)
) -> Response:
    c = container(request)
    model = default_model(request, model)
    report = file_report_object(c.reports.file_report(v.org_id, file_id, model=model, method="supervised"))
    estimate = None
    if report["job_error"] is None and report.get("n_tokenized"):
        estimate = estimate_object(c.reports.estimate(v.org_id, JobSpec(model=model, training_file=file_id)))
    cost = training_quote(c, v.org_id, model, estimate["billable_tokens"]) if estimate else None
    return page(
        request, "_report.html", viewer=v, report=report, estimate=estimate, cost=cost, file_id=file_id
    )


@router.post("/files/{file_id}/delete")
def delete_file(request: Request, file_id: str, v: Viewer = Depends(checked_viewer)) -> Response:
    container(request).files.delete(v.org_id, file_id)
    return redirect("/files")

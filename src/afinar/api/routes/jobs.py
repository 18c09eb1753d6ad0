"""``/v1/fine_tuning/jobs``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from afinar.api.deps import get_container, get_principal, json_body, parse_body
from afinar.api.idempotency import Idempotency, fingerprint, idempotency
from afinar.api.schemas.jobs import CreateJobRequest, checkpoint_list, event_list, job_list, job_object
from afinar.services.container import Container
from afinar.services.orgs import Principal
from afinar.store.tables import Job

router = APIRouter(tags=["fine-tuning"])


def _out(c: Container, job: Job) -> dict[str, Any]:
    """The job object, with its eval gate (additive ``eval_gate``)."""
    return job_object(job, c.jobs.eval_gates([job]).get(job.id))


@router.post("/fine_tuning/jobs")
def create_job(
    body: dict[str, Any] = Depends(json_body),
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
    idem: Idempotency = Depends(idempotency),
) -> dict[str, Any]:
    def create() -> dict[str, Any]:
        spec = parse_body(CreateJobRequest, body).to_domain()
        return _out(
            c, c.jobs.create(p.org_id, p.org_slug, spec, project_id=p.project_id, api_key_id=p.key_id)
        )

    return idem.run(fingerprint(body), create)


@router.get("/fine_tuning/jobs")
def list_jobs(
    request: Request,
    after: str | None = None,
    limit: int = 20,
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
) -> dict[str, Any]:
    meta = {k[len("metadata[") : -1]: v for k, v in request.query_params.items() if k.startswith("metadata[")}
    no_meta = request.query_params.get("metadata") == "null"
    page = c.jobs.list(p.org_id, after=after, limit=limit, metadata=meta or None, no_metadata=no_meta)
    return job_list(page, c.jobs.eval_gates(page.items))


@router.get("/fine_tuning/jobs/{job_id}")
def retrieve_job(
    job_id: str, p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> dict[str, Any]:
    return _out(c, c.jobs.get(p.org_id, job_id))


@router.get("/fine_tuning/jobs/{job_id}/events")
def list_events(
    job_id: str,
    after: str | None = None,
    limit: int = 20,
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
) -> dict[str, Any]:
    return event_list(c.jobs.events(p.org_id, job_id, after=after, limit=limit))


@router.get("/fine_tuning/jobs/{job_id}/checkpoints")
def list_checkpoints(
    job_id: str,
    after: str | None = None,
    limit: int = 10,
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
) -> dict[str, Any]:
    return checkpoint_list(c.jobs.checkpoints(p.org_id, job_id, after=after, limit=limit))


@router.post("/fine_tuning/jobs/{job_id}/cancel")
def cancel_job(
    job_id: str, p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> dict[str, Any]:
    return _out(c, c.jobs.cancel(p.org_id, job_id))


@router.post("/fine_tuning/jobs/{job_id}/pause")
def pause_job(
    job_id: str, p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> dict[str, Any]:
    return _out(c, c.jobs.pause(p.org_id, job_id))


@router.post("/fine_tuning/jobs/{job_id}/resume")
def resume_job(
    job_id: str, p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> dict[str, Any]:
    return _out(c, c.jobs.resume(p.org_id, job_id))

"""Additive ``/v1/afinar/...`` routes: a file's validation report and a job's dry-run estimate."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from afinar.api.deps import get_container, get_principal, json_body, parse_body
from afinar.api.schemas.reports import (
    CreateEstimateRequest,
    estimate_object,
    file_report_object,
    report_method,
)
from afinar.services.container import Container
from afinar.services.orgs import Principal

router = APIRouter(tags=["afinar"])


@router.get("/afinar/files/{file_id}/report")
def file_report(
    file_id: str,
    model: str | None = None,
    method: str = "supervised",
    moderation: bool = True,
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
) -> dict[str, Any]:
    checked = report_method(method)
    return file_report_object(
        c.reports.file_report(p.org_id, file_id, model=model, method=checked, moderation=moderation)
    )


@router.post("/afinar/estimates")
def create_estimate(
    body: dict[str, Any] = Depends(json_body),
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
) -> dict[str, Any]:
    spec = parse_body(CreateEstimateRequest, body).to_domain()
    return estimate_object(c.reports.estimate(p.org_id, spec))

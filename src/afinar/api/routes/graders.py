"""``/v1/fine_tuning/alpha/graders`` (the official SDK's ``client.fine_tuning.alpha.graders``):
validate a grader, or run it on one model sample and item, with the Evals API's graders."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from afinar.api.deps import get_container, get_principal, json_body, parse_body
from afinar.api.schemas.graders import RunGraderRequest, ValidateGraderRequest, run_object, validate_object
from afinar.services.container import Container
from afinar.services.orgs import Principal

router = APIRouter(tags=["fine-tuning"])


@router.post("/fine_tuning/alpha/graders/validate")
def validate_grader(
    body: dict[str, Any] = Depends(json_body),
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
) -> dict[str, Any]:
    return validate_object(c.graders.validate(p, parse_body(ValidateGraderRequest, body).grader))


@router.post("/fine_tuning/alpha/graders/run")
async def run_grader(
    body: dict[str, Any] = Depends(json_body),
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
) -> dict[str, Any]:
    req = parse_body(RunGraderRequest, body)
    return run_object(await c.graders.run(p, req.grader, req.model_sample, req.item))

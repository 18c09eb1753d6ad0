"""``/v1/evals`` (the official SDK's ``client.evals``), plus ``/v1/afinar/evals/{id}/compare`` and
``/v1/afinar/fine_tuning/jobs/{id}/eval_gate``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from afinar.api.deps import get_container, get_principal, json_body, parse_body
from afinar.api.idempotency import Idempotency, fingerprint, idempotency
from afinar.api.schemas.evals import (
    CreateEvalRequest,
    CreateRunRequest,
    UpdateEvalRequest,
    comparison_object,
    eval_list,
    eval_object,
    gate_object,
    output_item_list,
    output_item_object,
    run_list,
    run_object,
)
from afinar.errors import NotFound
from afinar.services.container import Container
from afinar.services.orgs import Principal

router = APIRouter(tags=["evals"])


@router.post("/evals")
def create_eval(
    body: dict[str, Any] = Depends(json_body),
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
    idem: Idempotency = Depends(idempotency),
) -> dict[str, Any]:
    return idem.run(
        fingerprint(body),
        lambda: eval_object(c.evals.create(p, parse_body(CreateEvalRequest, body).to_domain())),
    )


@router.get("/evals")
def list_evals(
    after: str | None = None,
    limit: int = 20,
    order: str = "asc",
    order_by: str = "created_at",
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
) -> dict[str, Any]:
    return eval_list(c.evals.list_evals(p.org_id, after=after, limit=limit, order=order, order_by=order_by))


@router.get("/evals/{eval_id}")
def retrieve_eval(
    eval_id: str, p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> dict[str, Any]:
    return eval_object(c.evals.get(p.org_id, eval_id))


@router.post("/evals/{eval_id}")
def update_eval(
    eval_id: str,
    body: dict[str, Any] = Depends(json_body),
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
) -> dict[str, Any]:
    c.evals.get(p.org_id, eval_id)  # an unknown eval is a 404 before the body's 400s
    return eval_object(c.evals.update(p.org_id, eval_id, parse_body(UpdateEvalRequest, body).to_domain()))


@router.delete("/evals/{eval_id}")
def delete_eval(
    eval_id: str, p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> dict[str, Any]:
    return {"object": "eval.deleted", "deleted": True, "eval_id": c.evals.delete(p.org_id, eval_id)}


@router.post("/evals/{eval_id}/runs")
def create_run(
    eval_id: str,
    body: dict[str, Any] = Depends(json_body),
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
    idem: Idempotency = Depends(idempotency),
) -> dict[str, Any]:
    def create() -> dict[str, Any]:
        c.evals.get(p.org_id, eval_id)  # an unknown eval is a 404 before the body's 400s
        return run_object(c.eval_runs.create_run(p, eval_id, parse_body(CreateRunRequest, body).to_domain()))

    return idem.run(fingerprint(body), create)


@router.get("/evals/{eval_id}/runs")
def list_runs(
    eval_id: str,
    after: str | None = None,
    limit: int = 20,
    order: str = "asc",
    status: str | None = None,
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
) -> dict[str, Any]:
    return run_list(
        c.eval_runs.list_runs(p.org_id, eval_id, after=after, limit=limit, order=order, status=status)
    )


@router.get("/evals/{eval_id}/runs/{run_id}")
def retrieve_run(
    eval_id: str, run_id: str, p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> dict[str, Any]:
    return run_object(c.eval_runs.get_run(p.org_id, eval_id, run_id))


@router.post("/evals/{eval_id}/runs/{run_id}/cancel")
@router.post("/evals/{eval_id}/runs/{run_id}")  # older SDKs cancel with a POST on the run itself
def cancel_run(
    eval_id: str, run_id: str, p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> dict[str, Any]:
    return run_object(c.eval_runs.cancel_run(p.org_id, eval_id, run_id))


@router.delete("/evals/{eval_id}/runs/{run_id}")
def delete_run(
    eval_id: str, run_id: str, p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> dict[str, Any]:
    return {
        "object": "eval.run.deleted",
        "deleted": True,
        "run_id": c.eval_runs.delete_run(p.org_id, eval_id, run_id),
    }


@router.get("/evals/{eval_id}/runs/{run_id}/output_items")
def list_output_items(
    eval_id: str,
    run_id: str,
    after: str | None = None,
    limit: int = 20,
    order: str = "asc",
    status: str | None = None,
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
) -> dict[str, Any]:
    page = c.eval_output_items.list_items(
        p.org_id, eval_id, run_id, after=after, limit=limit, order=order, status=status
    )
    return output_item_list(page)


@router.get("/evals/{eval_id}/runs/{run_id}/output_items/{output_item_id}")
def retrieve_output_item(
    eval_id: str,
    run_id: str,
    output_item_id: str,
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
) -> dict[str, Any]:
    return output_item_object(c.eval_output_items.get(p.org_id, eval_id, run_id, output_item_id))


@router.get("/afinar/evals/{eval_id}/compare")
def compare_runs(
    eval_id: str,
    base_run_id: str | None = None,
    candidate_run_id: str | None = None,
    changed_only: bool = False,
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
) -> dict[str, Any]:
    cmp = c.eval_comparisons.compare(p.org_id, eval_id, base_run_id, candidate_run_id)
    return comparison_object(cmp, changed_only=changed_only)


@router.get("/afinar/fine_tuning/jobs/{job_id}/eval_gate")
def job_eval_gate(
    job_id: str, p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> dict[str, Any]:
    c.jobs.get(p.org_id, job_id)
    gate = c.eval_gates.get(p.org_id, job_id)
    if gate is None:
        raise NotFound(f"The fine-tuning job {job_id} has no eval gate.", param="job_id")
    return gate_object(gate)

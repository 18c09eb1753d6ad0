"""OpenAI's admin usage, costs and spend-limit routes, and Afinar's additive usage summary.

- ``GET /v1/organization/usage/completions``: chat tokens per bucket
  (``client.admin.organization.usage.completions``)
- ``GET /v1/organization/costs``: money per bucket and line item (``client.admin.organization.usage.costs``)
- ``GET|POST|DELETE /v1/organization/spend_limit``: the organisation's monthly hard limit
- ``GET|POST|DELETE /v1/organization/projects/{project_id}/spend_limit``: a project's
- ``GET /v1/afinar/usage``: the free training allowance left today and month-to-date spend

Until admin keys and roles exist, any valid key of the organisation may call these routes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from afinar.api.deps import get_container, get_principal, json_body, parse_body
from afinar.api.schemas import usage as schema
from afinar.domain.principal import Principal
from afinar.errors import InvalidRequest
from afinar.services.container import Container
from afinar.services.usage_reports import UsageQuery

router = APIRouter(tags=["usage"])


def _values(request: Request, name: str) -> tuple[str, ...]:
    """A list parameter, as the SDK sends it (``name[]=a&name[]=b``) or repeated (``name=a&name=b``).

    Values are never split on commas: line items contain one (``"model, input_tokens"``)."""
    return tuple(v for k, v in request.query_params.multi_items() if k in (name, f"{name}[]") and v)


def _int(request: Request, name: str, *, required: bool = False) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        if required:
            raise InvalidRequest(f"Missing required parameter: '{name}'.", param=name)
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(f"Invalid value for '{name}': expected an integer.", param=name) from None


def _bool(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise InvalidRequest(f"Invalid value for '{name}': expected true or false.", param=name)


def usage_query(request: Request) -> UsageQuery:
    start = _int(request, "start_time", required=True)
    assert start is not None
    return UsageQuery(
        start_time=start,
        end_time=_int(request, "end_time"),
        bucket_width=request.query_params.get("bucket_width") or "1d",
        group_by=_values(request, "group_by"),
        limit=_int(request, "limit"),
        page=request.query_params.get("page") or None,
        project_ids=_values(request, "project_ids"),
        api_key_ids=_values(request, "api_key_ids"),
        models=_values(request, "models"),
        user_ids=_values(request, "user_ids"),
        line_items=_values(request, "line_items"),
        batch=_bool(request, "batch"),
    )


@router.get("/organization/usage/completions")
def usage_completions(
    q: UsageQuery = Depends(usage_query),
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
) -> dict[str, Any]:
    return schema.completions_page(c.usage_reports.completions(p.org_id, q))


@router.get("/organization/costs")
def costs(
    q: UsageQuery = Depends(usage_query),
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
) -> dict[str, Any]:
    return schema.costs_page(c.usage_reports.costs(p.org_id, q))


@router.get("/organization/spend_limit")
def get_spend_limit(
    p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> dict[str, Any]:
    return schema.spend_limit(c.spend_limits.get_limit(p.org_id), project=False)


@router.post("/organization/spend_limit")
def set_spend_limit(
    body: dict[str, Any] = Depends(json_body),
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
) -> dict[str, Any]:
    cents = parse_body(schema.SpendLimitUpdate, body).threshold_amount
    return schema.spend_limit(c.spend_limits.set_limit(p.org_id, cents), project=False)


@router.delete("/organization/spend_limit")
def delete_spend_limit(
    p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> dict[str, Any]:
    return schema.spend_limit_deleted(c.spend_limits.delete_limit(p.org_id), project=False)


@router.get("/organization/projects/{project_id}/spend_limit")
def get_project_spend_limit(
    project_id: str, p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> dict[str, Any]:
    return schema.spend_limit(c.spend_limits.get_limit(p.org_id, project_id), project=True)


@router.post("/organization/projects/{project_id}/spend_limit")
def set_project_spend_limit(
    project_id: str,
    body: dict[str, Any] = Depends(json_body),
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
) -> dict[str, Any]:
    try:
        cents = parse_body(schema.SpendLimitUpdate, body).threshold_amount
    except InvalidRequest:
        c.spend_limits.project(p.org_id, project_id)  # an unknown or foreign project is a 404 first
        raise
    return schema.spend_limit(c.spend_limits.set_limit(p.org_id, cents, project_id), project=True)


@router.delete("/organization/projects/{project_id}/spend_limit")
def delete_project_spend_limit(
    project_id: str, p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> dict[str, Any]:
    return schema.spend_limit_deleted(c.spend_limits.delete_limit(p.org_id, project_id), project=True)


@router.get("/afinar/usage")
def usage_summary(
    p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> dict[str, Any]:
    return schema.summary(c.usage_reports.summary(p))

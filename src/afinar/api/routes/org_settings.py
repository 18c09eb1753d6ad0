"""``/v1/afinar/organization/settings``: the calling organisation's settings object (admin key).

``GET`` returns it; ``POST`` changes the fields it is given (services/org_settings.py). Both need
an admin key: a project key is refused with 403 ``insufficient_permissions``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from afinar.api.deps import get_container, get_principal, json_body
from afinar.errors import PermissionDenied
from afinar.services import org_settings
from afinar.services.container import Container
from afinar.services.orgs import Principal

router = APIRouter(tags=["admin"])

PATH = "/afinar/organization/settings"


def admin_principal(p: Principal = Depends(get_principal)) -> Principal:
    if not p.is_admin:
        raise PermissionDenied(
            "The organization's settings need an admin API key.", code="insufficient_permissions"
        )
    return p


@router.get(PATH)
async def get_settings(
    p: Principal = Depends(admin_principal), c: Container = Depends(get_container)
) -> dict[str, Any]:
    return await run_in_threadpool(org_settings.get, c.db, p.org_id)


@router.post(PATH)
async def update_settings(
    body: dict[str, Any] = Depends(json_body),
    p: Principal = Depends(admin_principal),
    c: Container = Depends(get_container),
) -> dict[str, Any]:
    # Async endpoint so the audit actor bound by get_principal (a context variable) is visible;
    # the thread pool copies the context.
    return await run_in_threadpool(org_settings.update, c.db, p.org_id, body)

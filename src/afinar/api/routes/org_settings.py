"""``/v1/afinar/organization/settings``: the calling organisation's settings object (admin key).

``GET`` returns it; ``POST`` changes the fields it is given (``api/schemas/settings.py`` checks
them, services/org_settings.py stores them). Both need an admin key: a project key is refused
with 403 ``insufficient_permissions``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from afinar.api.deps import get_container, get_principal, json_body, parse_body
from afinar.api.schemas import settings as schema
from afinar.domain.principal import Principal
from afinar.errors import PermissionDenied
from afinar.services.container import Container

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
    return schema.settings_object(await run_in_threadpool(c.org_settings.get, p.org_id))


@router.post(PATH)
async def update_settings(
    body: dict[str, Any] = Depends(json_body),
    p: Principal = Depends(admin_principal),
    c: Container = Depends(get_container),
) -> dict[str, Any]:
    # Async endpoint so the audit actor bound by get_principal (a context variable) is visible;
    # the thread pool copies the context.
    update = parse_body(schema.OrganizationSettingsUpdate, body).to_domain()
    return schema.settings_object(await run_in_threadpool(c.org_settings.update, p.org_id, update))

"""``/v1/fine_tuning/checkpoints/{checkpoint}/permissions``: share a fine-tuned model checkpoint with
other projects of the organisation (``client.fine_tuning.checkpoints.permissions``).

Admin keys only, as on OpenAI (services/access.py counts these paths as admin routes: no project
scope, any project's checkpoint). Checkpoint names contain colons: the path converter takes them
whole.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from afinar.api.deps import get_container, get_principal, json_body, parse_body
from afinar.api.schemas import checkpoint_permissions as schema
from afinar.domain.principal import Principal
from afinar.errors import InvalidRequest
from afinar.services.checkpoint_permissions import CheckpointPermissionsService
from afinar.services.container import Container

router = APIRouter(tags=["fine-tuning"])

Body = dict[str, Any]
PATH = "/fine_tuning/checkpoints/{fine_tuned_model_checkpoint:path}/permissions"


def permissions(c: Container = Depends(get_container)) -> CheckpointPermissionsService:
    return c.checkpoint_permissions


@router.post(PATH)
def create_permissions(
    fine_tuned_model_checkpoint: str,
    body: Body = Depends(json_body),
    p: Principal = Depends(get_principal),
    svc: CheckpointPermissionsService = Depends(permissions),
) -> Body:
    try:
        req = parse_body(schema.PermissionsCreate, body).to_domain()
    except InvalidRequest:
        svc.require_checkpoint(p.org_id, fine_tuned_model_checkpoint)  # an unknown checkpoint is 404 first
        raise
    rows = svc.create(p.org_id, fine_tuned_model_checkpoint, req)
    return schema.permission_list(rows, False)


@router.get(PATH)
def list_permissions(
    fine_tuned_model_checkpoint: str,
    after: str | None = None,
    limit: int = 10,
    order: str = "descending",
    project_id: str | None = None,
    p: Principal = Depends(get_principal),
    svc: CheckpointPermissionsService = Depends(permissions),
) -> Body:
    page = svc.list(
        p.org_id, fine_tuned_model_checkpoint, project_id=project_id, after=after, limit=limit, order=order
    )
    return schema.permission_list(page.items, page.has_more)


@router.delete(PATH + "/{permission_id}")
def delete_permission(
    fine_tuned_model_checkpoint: str,
    permission_id: str,
    p: Principal = Depends(get_principal),
    svc: CheckpointPermissionsService = Depends(permissions),
) -> Body:
    return schema.permission_deleted(svc.delete(p.org_id, fine_tuned_model_checkpoint, permission_id))

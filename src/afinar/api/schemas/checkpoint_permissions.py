"""Wire shapes of ``/v1/fine_tuning/checkpoints/{checkpoint}/permissions``
(``client.fine_tuning.checkpoints.permissions`` in the SDK): the create body and the
``checkpoint.permission`` objects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from afinar.api.schemas.lists import listing
from afinar.errors import InvalidRequest
from afinar.services.checkpoint_permissions import MAX_PROJECTS, NewPermissions
from afinar.store.tables import CheckpointPermission

OBJECT = "checkpoint.permission"


class PermissionsCreate(BaseModel):
    """``POST /v1/fine_tuning/checkpoints/{checkpoint}/permissions``: ``{"project_ids": [...]}``."""

    model_config = ConfigDict(frozen=True)

    project_ids: tuple[str, ...]

    @model_validator(mode="before")
    @classmethod
    def _check(cls, body: Any) -> dict[str, Any]:
        ids = body.get("project_ids") if isinstance(body, dict) else None
        if (
            not isinstance(ids, list)
            or not 1 <= len(ids) <= MAX_PROJECTS
            or not all(isinstance(i, str) and i for i in ids)
        ):
            raise InvalidRequest(
                f"'project_ids' must be a list of 1 to {MAX_PROJECTS} project ids.", param="project_ids"
            )
        return {"project_ids": tuple(ids)}

    def to_domain(self) -> NewPermissions:
        return NewPermissions(self.project_ids)


def permission(row: CheckpointPermission) -> dict[str, Any]:
    return {"object": OBJECT, "id": row.id, "created_at": row.created_at, "project_id": row.project_id}


def permission_list(rows: Sequence[CheckpointPermission], has_more: bool) -> dict[str, Any]:
    return listing(rows, has_more, permission)


def permission_deleted(permission_id: str) -> dict[str, Any]:
    return {"object": OBJECT, "id": permission_id, "deleted": True}

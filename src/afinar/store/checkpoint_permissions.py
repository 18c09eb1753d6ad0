"""Checkpoint permissions: which projects of an organisation a fine-tuned model checkpoint is shared
with (services/checkpoint_permissions.py). The table is not project-scoped: the admin routes read
every project's grants, and model resolution asks for the caller's project by name."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from afinar.store.pagination import Page, paginate
from afinar.store.tables import CheckpointPermission


def page(
    s: Session,
    org_id: str,
    checkpoint: str,
    *,
    project_id: str | None,
    after: str | None,
    limit: int,
    desc: bool,
) -> Page[CheckpointPermission]:
    stmt = select(CheckpointPermission).where(
        CheckpointPermission.org_id == org_id, CheckpointPermission.checkpoint == checkpoint
    )
    if project_id is not None:
        stmt = stmt.where(CheckpointPermission.project_id == project_id)
    return paginate(s, stmt, CheckpointPermission, after=after, limit=limit, desc=desc)


def by_project(s: Session, org_id: str, checkpoint: str) -> dict[str, CheckpointPermission]:
    """The checkpoint's permissions by project id."""
    stmt = select(CheckpointPermission).where(
        CheckpointPermission.org_id == org_id, CheckpointPermission.checkpoint == checkpoint
    )
    return {row.project_id: row for row in s.scalars(stmt)}


def get(s: Session, org_id: str, checkpoint: str, permission_id: str) -> CheckpointPermission | None:
    return s.scalar(
        select(CheckpointPermission).where(
            CheckpointPermission.id == permission_id,
            CheckpointPermission.org_id == org_id,
            CheckpointPermission.checkpoint == checkpoint,
        )
    )


def is_shared_with(s: Session, org_id: str, checkpoint: str, project_id: str) -> bool:
    stmt = select(CheckpointPermission.id).where(
        CheckpointPermission.org_id == org_id,
        CheckpointPermission.checkpoint == checkpoint,
        CheckpointPermission.project_id == project_id,
    )
    return s.scalar(stmt.limit(1)) is not None

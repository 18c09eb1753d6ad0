"""Checkpoint permissions: an organisation shares a fine-tuned model checkpoint with other projects
of the organisation (``client.fine_tuning.checkpoints.permissions``, admin keys only).

A key of a project named by a permission may call the checkpoint (chat) as if it were its own
project's: model resolution asks the store whether the request's project holds a permission
(services/models.py). Deleting the permission takes that access away at the next request. The
checkpoint must be one of the organisation's (any project), else 404; every project id must be an
active project of the organisation, else 400 (``project_ids``). Sharing with a project that already
holds a permission returns that permission. Grants and removals are written to the audit log
(``checkpoint_permission.created|deleted``, OpenAI's types).
"""

from __future__ import annotations

from dataclasses import dataclass

from afinar import ids
from afinar.errors import InvalidRequest, NotFound
from afinar.ids import parse_model_name
from afinar.services import audit
from afinar.services.listing import check_limit
from afinar.services.projects import ProjectsService
from afinar.store import admin as admin_repo
from afinar.store import checkpoint_permissions as repo
from afinar.store import jobs as jobs_repo
from afinar.store.db import Database
from afinar.store.pagination import Page
from afinar.store.tables import CheckpointPermission

CREATED = "checkpoint_permission.created"
DELETED = "checkpoint_permission.deleted"
MAX_PROJECTS = 100  # project ids in one request


@dataclass(frozen=True)
class NewPermissions:
    project_ids: tuple[str, ...]


class CheckpointPermissionsService:
    def __init__(self, *, db: Database, projects: ProjectsService) -> None:
        self.db = db
        self.projects = projects

    def require_checkpoint(self, org_id: str, checkpoint: str) -> None:
        """404 unless ``checkpoint`` names a checkpoint of a model of the organisation (any project)."""
        ref = parse_model_name(checkpoint)
        found = False
        if ref.step is not None:
            with admin_repo.scoped(None), self.db.session() as s:
                ck = jobs_repo.checkpoint_by_name(s, org_id, checkpoint)
                found = ck is not None and jobs_repo.get_model(s, org_id, ref.fine_tuned or "") is not None
        if not found:
            raise NotFound(
                f"The fine-tuned model checkpoint `{checkpoint}` does not exist in this organization.",
                param="fine_tuned_model_checkpoint",
                code="model_not_found",
            )

    def _project(self, org_id: str, project_id: str) -> None:
        try:
            self.projects.project(org_id, project_id, active=True)
        except (NotFound, InvalidRequest) as exc:
            raise InvalidRequest(
                f"Cannot share with {project_id!r}: {exc.message}", param="project_ids"
            ) from None

    def create(self, org_id: str, checkpoint: str, req: NewPermissions) -> list[CheckpointPermission]:
        """One permission per project (in the request's order, each project once)."""
        self.require_checkpoint(org_id, checkpoint)
        wanted = list(dict.fromkeys(req.project_ids))
        for project_id in wanted:
            self._project(org_id, project_id)
        made: list[CheckpointPermission] = []
        with self.db.session() as s:
            now = int(self.db.now())
            existing = repo.by_project(s, org_id, checkpoint)
            out: list[CheckpointPermission] = []
            for project_id in wanted:
                row = existing.get(project_id)
                if row is None:
                    row = CheckpointPermission(
                        id=ids.new_id("cp_"),
                        org_id=org_id,
                        checkpoint=checkpoint,
                        project_id=project_id,
                        created_at=now,
                    )
                    s.add(row)
                    made.append(row)
                out.append(row)
        for row in made:
            audit.record(
                self.db,
                CREATED,
                org_id,
                row.id,
                project_id=row.project_id,
                fine_tuned_model_checkpoint=checkpoint,
            )
        return out

    def list(
        self,
        org_id: str,
        checkpoint: str,
        *,
        project_id: str | None,
        after: str | None,
        limit: int,
        order: str,
    ) -> Page[CheckpointPermission]:
        check_limit(limit)
        if order not in ("ascending", "descending"):
            raise InvalidRequest("'order' must be 'ascending' or 'descending'.", param="order")
        self.require_checkpoint(org_id, checkpoint)
        with self.db.session() as s:
            return repo.page(
                s,
                org_id,
                checkpoint,
                project_id=project_id,
                after=after,
                limit=limit,
                desc=order == "descending",
            )

    def delete(self, org_id: str, checkpoint: str, permission_id: str) -> str:
        self.require_checkpoint(org_id, checkpoint)
        with self.db.session() as s:
            row = repo.get(s, org_id, checkpoint, permission_id)
            if row is None:
                raise NotFound(
                    f"No such permission on this checkpoint: {permission_id}", param="permission_id"
                )
            project_id = row.project_id
            s.delete(row)
        audit.record(
            self.db,
            DELETED,
            org_id,
            permission_id,
            project_id=project_id,
            fine_tuned_model_checkpoint=checkpoint,
        )
        return permission_id

"""Projects of an organisation and their members (the organisation's users, each with a role).

Every change is written to the audit log with the calling key as its actor.
"""

from __future__ import annotations

from dataclasses import dataclass

from afinar import ids
from afinar.errors import Conflict, InvalidRequest, NotFound
from afinar.services import audit
from afinar.services.listing import check_limit
from afinar.store import admin as repo
from afinar.store.db import Database
from afinar.store.pagination import Page
from afinar.store.tables import OrgUser, Project, ProjectMember

PROJECT_ROLES = ("owner", "member")


@dataclass(frozen=True)
class NewProject:
    name: str


@dataclass(frozen=True)
class ProjectUpdate:
    name: str | None = None  # None: unchanged


@dataclass(frozen=True)
class NewMember:
    """A user of the organisation, named by id (or else by email), joining a project."""

    role: str
    user_id: str | None = None
    email: str | None = None


class ProjectsService:
    def __init__(self, *, db: Database) -> None:
        self.db = db

    def _now(self) -> int:
        return int(self.db.now())

    # --- projects -----------------------------------------------------------------------------

    def project(self, org_id: str, project_id: str, *, active: bool = False) -> Project:
        with self.db.session() as s:
            row = repo.get_project(s, org_id, project_id)
        if row is None:
            raise NotFound(f"No such project: {project_id}", param="project_id")
        if active and row.archived_at is not None:
            raise InvalidRequest(
                f"The project {project_id} is archived.", param="project_id", code="project_archived"
            )
        return row

    def create_project(self, org_id: str, req: NewProject) -> Project:
        row = Project(id=ids.new_id("proj_"), org_id=org_id, name=req.name, created_at=self._now())
        with self.db.session() as s:
            s.add(row)
        audit.record(self.db, "project.created", org_id, row.id, project_id=row.id, data={"name": req.name})
        return row

    def projects(
        self, org_id: str, *, after: str | None, limit: int, include_archived: bool
    ) -> Page[Project]:
        check_limit(limit)
        with self.db.session() as s:
            return repo.projects_page(s, org_id, after=after, limit=limit, archived=include_archived)

    def default_project_id(self, org_id: str) -> str | None:
        with self.db.session() as s:
            return repo.default_project_id(s, org_id)

    def update_project(self, org_id: str, project_id: str, req: ProjectUpdate) -> Project:
        self.project(org_id, project_id)
        with self.db.session() as s:
            row = repo.get_project(s, org_id, project_id)
            assert row is not None
            if req.name is not None:
                row.name = req.name
        audit.record(
            self.db,
            "project.updated",
            org_id,
            project_id,
            project_id=project_id,
            changes_requested={"name": req.name},
        )
        return row

    def archive_project(self, org_id: str, project_id: str) -> Project:
        self.project(org_id, project_id)
        if project_id == self.default_project_id(org_id):
            raise InvalidRequest(
                "The default project cannot be archived.",
                param="project_id",
                code="cannot_archive_default_project",
            )
        with self.db.session() as s:
            row = repo.get_project(s, org_id, project_id)
            assert row is not None
            if row.archived_at is None:
                row.archived_at = self._now()
        audit.record(self.db, "project.archived", org_id, project_id, project_id=project_id)
        return row

    # --- members ------------------------------------------------------------------------------

    def add_member(self, org_id: str, project_id: str, req: NewMember) -> tuple[ProjectMember, OrgUser]:
        self.project(org_id, project_id, active=True)
        with self.db.session() as s:
            if req.user_id is not None:
                user = repo.get_user(s, org_id, req.user_id)
            elif req.email is not None:
                user = repo.user_by_email(s, org_id, req.email.strip().lower())
            else:
                raise InvalidRequest("Give 'user_id' or 'email'.", param="user_id")
            if user is None:
                raise NotFound(f"No such user: {req.user_id or req.email}", param="user_id")
            if repo.membership(s, project_id, user.id) is not None:
                raise Conflict(f"{user.id} is already a member of {project_id}.", param="user_id")
            member = ProjectMember(
                org_id=org_id, project_id=project_id, user_id=user.id, role=req.role, added_at=self._now()
            )
            s.add(member)
        audit.record(self.db, "user.added", org_id, user.id, project_id=project_id, data={"role": req.role})
        return member, user

    def members(
        self, org_id: str, project_id: str, *, after: str | None, limit: int
    ) -> Page[tuple[ProjectMember, OrgUser]]:
        check_limit(limit)
        self.project(org_id, project_id)
        with self.db.session() as s:
            return repo.members_page(s, project_id, after=after, limit=limit)

    def member(self, org_id: str, project_id: str, user_id: str) -> tuple[ProjectMember, OrgUser]:
        self.project(org_id, project_id)
        with self.db.session() as s:
            member = repo.membership(s, project_id, user_id)
            user = repo.get_user(s, org_id, user_id)
        if member is None or user is None:
            raise NotFound(f"No such user in project {project_id}: {user_id}", param="user_id")
        return member, user

    def update_member(
        self, org_id: str, project_id: str, user_id: str, role: str
    ) -> tuple[ProjectMember, OrgUser]:
        self.member(org_id, project_id, user_id)
        with self.db.session() as s:
            member = repo.membership(s, project_id, user_id)
            assert member is not None
            member.role = role
        audit.record(
            self.db, "user.updated", org_id, user_id, project_id=project_id, changes_requested={"role": role}
        )
        return self.member(org_id, project_id, user_id)

    def remove_member(self, org_id: str, project_id: str, user_id: str) -> str:
        self.member(org_id, project_id, user_id)
        with self.db.session() as s:
            revoked = repo.revoke_owned(s, org_id, user_id, self._now(), project_id=project_id)
            s.delete(repo.membership(s, project_id, user_id))
        for key_id in revoked:
            audit.record(self.db, "api_key.deleted", org_id, key_id, project_id=project_id)
        audit.record(self.db, "user.deleted", org_id, user_id, project_id=project_id)
        return user_id

"""The people of an organisation (added by the operator CLI; the API has no sign-up).

An organisation role is ``owner`` (owns every project) or ``reader``; project roles are given by
project membership (``services/projects.py``). Every change is written to the audit log.
"""

from __future__ import annotations

from afinar import ids
from afinar.errors import Conflict, InvalidRequest, NotFound
from afinar.services import audit
from afinar.services.listing import check_limit
from afinar.store import admin as repo
from afinar.store.db import Database
from afinar.store.pagination import Page
from afinar.store.tables import OrgUser, ProjectMember

ORG_ROLES = ("owner", "reader")


class UsersService:
    def __init__(self, *, db: Database) -> None:
        self.db = db

    def add_user(self, org_id: str, email: str, *, name: str = "", role: str = "reader") -> OrgUser:
        """Add a person to the organisation (the operator CLI, whose arguments are checked here)."""
        if role not in ORG_ROLES:
            raise InvalidRequest(f"'role' must be one of {list(ORG_ROLES)}.", param="role")
        email = email.strip().lower()
        if "@" not in email or len(email) > 320:
            raise InvalidRequest("email must be an email address", param="email")
        with self.db.session() as s:
            if repo.user_by_email(s, org_id, email) is not None:
                raise Conflict(f"{email} is already a user of this organization.", param="email")
            user = OrgUser(
                id=ids.new_id("user-"),
                org_id=org_id,
                email=email,
                name=name,
                role=role,
                added_at=int(self.db.now()),
            )
            s.add(user)
        audit.record(self.db, "user.added", org_id, user.id, data={"role": role, "email": email})
        return user

    def users(self, org_id: str, *, after: str | None, limit: int, emails: list[str]) -> Page[OrgUser]:
        check_limit(limit)
        with self.db.session() as s:
            return repo.users_page(s, org_id, after=after, limit=limit, emails=[e.lower() for e in emails])

    def user(self, org_id: str, user_id: str) -> OrgUser:
        with self.db.session() as s:
            row = repo.get_user(s, org_id, user_id)
        if row is None:
            raise NotFound(f"No such user: {user_id}", param="user_id")
        return row

    def user_projects(self, user: OrgUser) -> list[tuple[ProjectMember, str]]:
        with self.db.session() as s:
            members = repo.memberships_of(s, user.id)
            names = repo.project_names(s, user.org_id, {m.project_id for m in members})
        return [(m, names.get(m.project_id, "")) for m in members]

    def update_user(self, org_id: str, user_id: str, role: str) -> OrgUser:
        self.user(org_id, user_id)
        with self.db.session() as s:
            row = repo.get_user(s, org_id, user_id)
            assert row is not None
            row.role = role
        audit.record(self.db, "user.updated", org_id, user_id, changes_requested={"role": role})
        return row

    def delete_user(self, org_id: str, user_id: str) -> str:
        self.user(org_id, user_id)
        with self.db.session() as s:
            revoked = repo.revoke_owned(s, org_id, user_id, int(self.db.now()))
            repo.remove_memberships(s, user_id)
            s.delete(repo.get_user(s, org_id, user_id))
        for key_id in revoked:
            audit.record(self.db, "api_key.deleted", org_id, key_id)
        audit.record(self.db, "user.deleted", org_id, user_id)
        return user_id

"""API keys: an organisation's admin keys, its projects' keys, and the keys the operator CLI makes.

Keys are stored hashed; the secret is returned once, when the key is created. Every change is
written to the audit log with the calling key as its actor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from afinar import ids
from afinar.errors import Conflict, InvalidRequest, NotFound
from afinar.services import audit
from afinar.services.listing import check_limit
from afinar.services.orgs import new_secret
from afinar.services.projects import ProjectsService
from afinar.store import admin as repo
from afinar.store import orgs as orgs_repo
from afinar.store.db import Database
from afinar.store.pagination import Page
from afinar.store.tables import ApiKey, OrgUser, ServiceAccount

READ_ONLY_SCOPE = "api.all.read"
MAX_EXPIRY_SECONDS = 10 * 365 * 86400


@dataclass(frozen=True)
class NewAdminKey:
    name: str
    expires_in_seconds: int | None = None


@dataclass(frozen=True)
class ProjectKeyUpdate:
    """``scopes``: ``()`` (all permissions) or ``(READ_ONLY_SCOPE,)``; ``given``: the fields sent."""

    scopes: tuple[str, ...] | None = None
    expires_in_seconds: int | None = None
    given: frozenset[str] = frozenset()

    def changes_requested(self) -> dict[str, Any]:
        values = {
            "scopes": None if self.scopes is None else list(self.scopes),
            "expires_in_seconds": self.expires_in_seconds,
        }
        return {k: v for k, v in values.items() if k in self.given}


def scopes_of(key: ApiKey) -> list[str]:
    return [READ_ONLY_SCOPE] if key.role == "reader" else []


class ApiKeysService:
    def __init__(self, *, db: Database, projects: ProjectsService) -> None:
        self.db = db
        self.projects = projects

    def _now(self) -> int:
        return int(self.db.now())

    def expiry(self, seconds: int | None) -> int | None:
        """When a key given ``expires_in_seconds`` now expires (None: never)."""
        return None if seconds is None else self._now() + seconds

    # --- any key (admin keys, service accounts and the operator CLI) ---------------------------

    def create_key(
        self,
        org_id: str,
        *,
        kind: str,
        name: str,
        project_id: str | None = None,
        role: str | None = None,
        owner_type: str | None = None,
        owner_id: str | None = None,
        expires_at: int | None = None,
    ) -> tuple[ApiKey, str]:
        """Store a new key (hashed) and return it with its secret, shown this once."""
        prefix = {"admin": "sk-afinar-admin-", "project": "sk-afinar-proj-"}[kind]
        if owner_type == "service_account":
            prefix = "sk-afinar-svcacct-"
        secret = new_secret(prefix)
        key = ApiKey(
            id=ids.new_id("key_"),
            org_id=org_id,
            project_id=project_id,
            name=name,
            key_hash=orgs_repo.hash_key(secret),
            redacted=secret[: len(prefix) + 2] + "…" + secret[-4:],
            created_at=self._now(),
            expires_at=expires_at,
            kind=kind,
            role=role,
            owner_type=owner_type,
            owner_id=owner_id,
        )
        with self.db.session() as s:
            orgs_repo.add_key(s, key)
        data = {"scopes": scopes_of(key), "kind": kind}
        audit.record(self.db, "api_key.created", org_id, key.id, project_id=project_id, data=data)
        return key, secret

    def _revoke(self, org_id: str, key: ApiKey) -> None:
        with self.db.session() as s:
            row = repo.active_key(s, org_id, key.id)
            if row is not None:
                row.revoked_at = self._now()
        audit.record(self.db, "api_key.deleted", org_id, key.id, project_id=key.project_id)

    def revoke_key(self, org_id: str, key_id: str) -> ApiKey:
        """Revoke any live key of the organisation (the operator CLI); effective on its next request."""
        with self.db.session() as s:
            key = repo.active_key(s, org_id, key_id)
        if key is None:
            raise NotFound(f"No such API key: {key_id}", param="key_id")
        self._revoke(org_id, key)
        return key

    # --- admin API keys -----------------------------------------------------------------------

    def create_admin_key(self, org_id: str, req: NewAdminKey) -> tuple[ApiKey, str]:
        expires_at = self.expiry(req.expires_in_seconds)
        return self.create_key(org_id, kind="admin", name=req.name, role="owner", expires_at=expires_at)

    def admin_keys(self, org_id: str, *, after: str | None, limit: int, order: str) -> Page[ApiKey]:
        check_limit(limit)
        if order not in ("asc", "desc"):
            raise InvalidRequest("order must be 'asc' or 'desc'", param="order")
        with self.db.session() as s:
            return repo.keys_page(
                s, org_id, kind="admin", project_id=None, after=after, limit=limit, desc=order == "desc"
            )

    def admin_key(self, org_id: str, key_id: str) -> ApiKey:
        with self.db.session() as s:
            key = repo.active_key(s, org_id, key_id)
        if key is None or key.kind != "admin":
            raise NotFound(f"No such admin API key: {key_id}", param="key_id")
        return key

    def delete_admin_key(self, org_id: str, key_id: str) -> str:
        key = self.admin_key(org_id, key_id)
        with self.db.session() as s:  # count and revoke in one transaction
            if repo.count_admin_keys(s, org_id) <= 1:
                raise Conflict(
                    "This is the organization's last admin key: create another one before deleting it.",
                    code="last_admin_key",
                )
            row = repo.active_key(s, org_id, key_id)
            if row is not None:
                row.revoked_at = self._now()
        audit.record(self.db, "api_key.deleted", org_id, key_id, project_id=key.project_id)
        return key_id

    # --- project API keys ---------------------------------------------------------------------

    def project_keys(self, org_id: str, project_id: str, *, after: str | None, limit: int) -> Page[ApiKey]:
        check_limit(limit)
        self.projects.project(org_id, project_id)
        with self.db.session() as s:
            return repo.keys_page(
                s, org_id, kind="project", project_id=project_id, after=after, limit=limit, desc=False
            )

    def project_key(self, org_id: str, project_id: str, key_id: str) -> ApiKey:
        self.projects.project(org_id, project_id)
        with self.db.session() as s:
            key = repo.active_key(s, org_id, key_id)
        if key is None or key.kind != "project" or key.project_id != project_id:
            raise NotFound(f"No such API key: {key_id}", param="api_key_id")
        return key

    def update_project_key(self, org_id: str, project_id: str, key_id: str, req: ProjectKeyUpdate) -> ApiKey:
        self.project_key(org_id, project_id, key_id)
        expires_at = self.expiry(req.expires_in_seconds)
        with self.db.session() as s:
            key = repo.active_key(s, org_id, key_id)
            assert key is not None
            if req.scopes is not None:
                key.role = "reader" if req.scopes else None
            if expires_at is not None:
                key.expires_at = expires_at
        audit.record(
            self.db,
            "api_key.updated",
            org_id,
            key_id,
            project_id=project_id,
            changes_requested=req.changes_requested(),
        )
        return key

    def delete_project_key(self, org_id: str, project_id: str, key_id: str) -> str:
        self._revoke(org_id, self.project_key(org_id, project_id, key_id))
        return key_id

    def owners(self, keys: list[ApiKey]) -> dict[str, ServiceAccount | tuple[OrgUser, str]]:
        """The service account or (user, project role) owning each key, by key id."""
        out: dict[str, ServiceAccount | tuple[OrgUser, str]] = {}
        with self.db.session() as s:
            for key in keys:
                if key.owner_type == "service_account" and key.owner_id:
                    account = repo.service_account_by_id(s, key.owner_id)
                    if account is not None:
                        out[key.id] = account
                elif key.owner_type == "user" and key.owner_id:
                    user = repo.get_user(s, key.org_id, key.owner_id)
                    member = repo.membership(s, key.project_id or "", key.owner_id)
                    if user is not None:
                        out[key.id] = (user, member.role if member else user.role)
        return out

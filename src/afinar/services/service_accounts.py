"""Service accounts: a project's non-human members, each with its own project API keys.

Every change is written to the audit log with the calling key as its actor.
"""

from __future__ import annotations

from dataclasses import dataclass

from afinar import ids
from afinar.errors import InvalidRequest, NotFound
from afinar.services import audit
from afinar.services.api_keys import ApiKeysService
from afinar.services.listing import check_limit
from afinar.services.projects import ProjectsService
from afinar.store import admin as repo
from afinar.store.db import Database
from afinar.store.pagination import Page
from afinar.store.tables import ApiKey, ServiceAccount

DEFAULT_KEY_NAME = "Secret Key"


@dataclass(frozen=True)
class NewServiceAccount:
    """``only``: create the account without a key (its role is then ``none``)."""

    name: str
    only: bool = False
    expires_in_seconds: int | None = None


@dataclass(frozen=True)
class NewServiceAccountKey:
    name: str = DEFAULT_KEY_NAME
    expires_in_seconds: int | None = None


@dataclass(frozen=True)
class ServiceAccountUpdate:
    name: str | None = None  # None: unchanged
    role: str | None = None


class ServiceAccountsService:
    def __init__(self, *, db: Database, projects: ProjectsService, api_keys: ApiKeysService) -> None:
        self.db = db
        self.projects = projects
        self.api_keys = api_keys

    def create_service_account(
        self, org_id: str, project_id: str, req: NewServiceAccount
    ) -> tuple[ServiceAccount, ApiKey | None, str | None]:
        self.projects.project(org_id, project_id, active=True)
        now = int(self.db.now())
        expires_at = self.api_keys.expiry(req.expires_in_seconds)
        account = ServiceAccount(
            id=ids.new_id("svc_acct_"),
            org_id=org_id,
            project_id=project_id,
            name=req.name,
            role="none" if req.only else "member",
            created_at=now,
        )
        with self.db.session() as s:
            s.add(account)
        audit.record(
            self.db,
            "service_account.created",
            org_id,
            account.id,
            project_id=project_id,
            data={"role": account.role},
        )
        if req.only:
            return account, None, None
        key, secret = self.api_keys.create_key(
            org_id,
            kind="project",
            name=DEFAULT_KEY_NAME,
            project_id=project_id,
            owner_type="service_account",
            owner_id=account.id,
            expires_at=expires_at,
        )
        return account, key, secret

    def create_service_account_key(
        self, org_id: str, project_id: str, sa_id: str, req: NewServiceAccountKey
    ) -> tuple[ApiKey, str]:
        account = self.service_account(org_id, project_id, sa_id)
        self.projects.project(org_id, project_id, active=True)
        if account.role == "none":
            raise InvalidRequest("Give the service account a role before creating keys for it.", param="role")
        return self.api_keys.create_key(
            org_id,
            kind="project",
            name=req.name,
            project_id=project_id,
            owner_type="service_account",
            owner_id=sa_id,
            expires_at=self.api_keys.expiry(req.expires_in_seconds),
        )

    def service_accounts(
        self, org_id: str, project_id: str, *, after: str | None, limit: int
    ) -> Page[ServiceAccount]:
        check_limit(limit)
        self.projects.project(org_id, project_id)
        with self.db.session() as s:
            return repo.service_accounts_page(s, org_id, project_id, after=after, limit=limit)

    def service_account(self, org_id: str, project_id: str, sa_id: str) -> ServiceAccount:
        self.projects.project(org_id, project_id)
        with self.db.session() as s:
            row = repo.get_service_account(s, org_id, project_id, sa_id)
        if row is None:
            raise NotFound(f"No such service account: {sa_id}", param="service_account_id")
        return row

    def update_service_account(
        self, org_id: str, project_id: str, sa_id: str, req: ServiceAccountUpdate
    ) -> ServiceAccount:
        self.service_account(org_id, project_id, sa_id)
        with self.db.session() as s:
            row = repo.get_service_account(s, org_id, project_id, sa_id)
            assert row is not None
            row.name = req.name or row.name
            row.role = req.role or row.role
        changes = {k: v for k, v in (("name", req.name), ("role", req.role)) if v is not None}
        audit.record(
            self.db,
            "service_account.updated",
            org_id,
            sa_id,
            project_id=project_id,
            changes_requested=changes,
        )
        return row

    def delete_service_account(self, org_id: str, project_id: str, sa_id: str) -> str:
        self.service_account(org_id, project_id, sa_id)
        with self.db.session() as s:
            revoked = repo.revoke_owned(s, org_id, sa_id, int(self.db.now()))
            row = repo.get_service_account(s, org_id, project_id, sa_id)
            s.delete(row)
        for key_id in revoked:
            audit.record(self.db, "api_key.deleted", org_id, key_id, project_id=project_id)
        audit.record(self.db, "service_account.deleted", org_id, sa_id, project_id=project_id)
        return sa_id

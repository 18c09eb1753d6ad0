"""Administration of an organisation: access rules, projects, API keys, service accounts, users.

Access rules (docs/admin.md): ``/v1/organization/*`` needs an admin key; elsewhere owners and
members may do everything in their project, readers may read and call models, role ``none`` nothing.
Every change here is written to the audit log with the calling key as its actor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from afinar import ids
from afinar.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from afinar.services import audit
from afinar.services.orgs import Principal, new_secret
from afinar.store import admin as repo
from afinar.store import orgs as orgs_repo
from afinar.store.pagination import Page
from afinar.store.tables import ApiKey, OrgUser, Project, ProjectMember, ServiceAccount

if TYPE_CHECKING:
    from afinar.services.container import Container

ADMIN_PREFIX = "/v1/organization"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# POST routes that change nothing stored: a reader may call them.
READER_POSTS = frozenset(
    {"/v1/chat/completions", "/v1/completions", "/v1/moderations", "/v1/afinar/estimates"}
)
READ_ONLY_SCOPE = "api.all.read"
MAX_EXPIRY_SECONDS = 10 * 365 * 86400


def is_admin_path(path: str) -> bool:
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")


def authorize(p: Principal, method: str, path: str) -> None:
    """Refuse (403) what the principal's key kind and role do not allow on this route."""
    if is_admin_path(path):
        if not p.is_admin:
            raise PermissionDenied(
                "This route manages the organization and needs an admin API key.",
                code="insufficient_permissions",
            )
        return
    if p.role in ("owner", "member"):
        return
    if p.role == "reader" and (method.upper() in READ_METHODS or path in READER_POSTS):
        return
    raise PermissionDenied(
        f"This API key has the role '{p.role}' in its project: it may not {method.upper()} {path}.",
        code="insufficient_permissions",
    )


def bind_scope(p: Principal) -> None:
    """Scope the rest of the request to the principal's project (files, jobs and models)."""
    repo.set_scope(repo.ProjectScope(p.project_id, p.in_default_project) if p.project_id else None)


def _name(body: dict[str, Any], param: str = "name", *, required: bool = True) -> str | None:
    value = body.get(param)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 256:
        raise InvalidRequest(f"'{param}' must be a non-empty string of at most 256 characters.", param=param)
    return value.strip()


def _role(body: dict[str, Any], allowed: tuple[str, ...], param: str = "role") -> str:
    value = body.get(param)
    if value not in allowed:
        raise InvalidRequest(f"'{param}' must be one of {list(allowed)}.", param=param)
    return str(value)


def _expiry(body: dict[str, Any], now: int, param: str = "expires_in_seconds") -> int | None:
    seconds = body.get(param)
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= MAX_EXPIRY_SECONDS:
        raise InvalidRequest(f"'{param}' must be an integer between 1 and {MAX_EXPIRY_SECONDS}.", param=param)
    return now + seconds


def check_limit(limit: int) -> None:
    if not 1 <= limit <= 100:
        raise InvalidRequest("limit must be between 1 and 100", param="limit")


def scopes_of(key: ApiKey) -> list[str]:
    return [READ_ONLY_SCOPE] if key.role == "reader" else []


class AdminService:
    def __init__(self, c: Container) -> None:
        self.c = c
        self.db = c.db

    # --- keys (shared by admin keys, service accounts and the operator CLI) -------------------

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
            created_at=int(self.c.clock()),
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
                row.revoked_at = int(self.c.clock())
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

    def create_admin_key(self, org_id: str, body: dict[str, Any]) -> tuple[ApiKey, str]:
        name = _name(body)
        assert name is not None
        expires_at = _expiry(body, int(self.c.clock()))
        return self.create_key(org_id, kind="admin", name=name, role="owner", expires_at=expires_at)

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
                row.revoked_at = int(self.c.clock())
        audit.record(self.db, "api_key.deleted", org_id, key_id, project_id=key.project_id)
        return key_id

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

    def create_project(self, org_id: str, body: dict[str, Any]) -> Project:
        name = _name(body)
        assert name is not None
        row = Project(id=ids.new_id("proj_"), org_id=org_id, name=name, created_at=int(self.c.clock()))
        with self.db.session() as s:
            s.add(row)
        audit.record(self.db, "project.created", org_id, row.id, project_id=row.id, data={"name": name})
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

    def update_project(self, org_id: str, project_id: str, body: dict[str, Any]) -> Project:
        self.project(org_id, project_id)
        name = _name(body, required=False)
        with self.db.session() as s:
            row = repo.get_project(s, org_id, project_id)
            assert row is not None
            if name is not None:
                row.name = name
        audit.record(
            self.db,
            "project.updated",
            org_id,
            project_id,
            project_id=project_id,
            changes_requested={"name": name},
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
                row.archived_at = int(self.c.clock())
        audit.record(self.db, "project.archived", org_id, project_id, project_id=project_id)
        return row

    # --- project API keys ---------------------------------------------------------------------

    def project_keys(self, org_id: str, project_id: str, *, after: str | None, limit: int) -> Page[ApiKey]:
        check_limit(limit)
        self.project(org_id, project_id)
        with self.db.session() as s:
            return repo.keys_page(
                s, org_id, kind="project", project_id=project_id, after=after, limit=limit, desc=False
            )

    def project_key(self, org_id: str, project_id: str, key_id: str) -> ApiKey:
        self.project(org_id, project_id)
        with self.db.session() as s:
            key = repo.active_key(s, org_id, key_id)
        if key is None or key.kind != "project" or key.project_id != project_id:
            raise NotFound(f"No such API key: {key_id}", param="api_key_id")
        return key

    def update_project_key(self, org_id: str, project_id: str, key_id: str, body: dict[str, Any]) -> ApiKey:
        self.project_key(org_id, project_id, key_id)
        scopes = body.get("scopes")
        if scopes is not None and (not isinstance(scopes, list) or not set(scopes) <= {READ_ONLY_SCOPE}):
            raise InvalidRequest(
                f"scopes must be [] (all permissions) or ['{READ_ONLY_SCOPE}'].", param="scopes"
            )
        now = int(self.c.clock())
        expires_at = _expiry(body, now)
        with self.db.session() as s:
            key = repo.active_key(s, org_id, key_id)
            assert key is not None
            if scopes is not None:
                key.role = "reader" if scopes else None
            if expires_at is not None:
                key.expires_at = expires_at
        changes = {k: body[k] for k in ("scopes", "expires_in_seconds") if k in body}
        audit.record(
            self.db, "api_key.updated", org_id, key_id, project_id=project_id, changes_requested=changes
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

    # --- service accounts ---------------------------------------------------------------------

    def create_service_account(
        self, org_id: str, project_id: str, body: dict[str, Any]
    ) -> tuple[ServiceAccount, ApiKey | None, str | None]:
        self.project(org_id, project_id, active=True)
        name = _name(body)
        assert name is not None
        only = bool(body.get("create_service_account_only"))
        now = int(self.c.clock())
        expires_at = _expiry(body, now)
        if only and expires_at is not None:
            raise InvalidRequest(
                "expires_in_seconds cannot be given with create_service_account_only.",
                param="expires_in_seconds",
            )
        account = ServiceAccount(
            id=ids.new_id("svc_acct_"),
            org_id=org_id,
            project_id=project_id,
            name=name,
            role="none" if only else "member",
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
        if only:
            return account, None, None
        key, secret = self.create_key(
            org_id,
            kind="project",
            name="Secret Key",
            project_id=project_id,
            owner_type="service_account",
            owner_id=account.id,
            expires_at=expires_at,
        )
        return account, key, secret

    def create_service_account_key(
        self, org_id: str, project_id: str, sa_id: str, body: dict[str, Any]
    ) -> tuple[ApiKey, str]:
        account = self.service_account(org_id, project_id, sa_id)
        self.project(org_id, project_id, active=True)
        if account.role == "none":
            raise InvalidRequest("Give the service account a role before creating keys for it.", param="role")
        name = _name(body, required=False) or "Secret Key"
        return self.create_key(
            org_id,
            kind="project",
            name=name,
            project_id=project_id,
            owner_type="service_account",
            owner_id=sa_id,
            expires_at=_expiry(body, int(self.c.clock())),
        )

    def service_accounts(
        self, org_id: str, project_id: str, *, after: str | None, limit: int
    ) -> Page[ServiceAccount]:
        check_limit(limit)
        self.project(org_id, project_id)
        with self.db.session() as s:
            return repo.service_accounts_page(s, org_id, project_id, after=after, limit=limit)

    def service_account(self, org_id: str, project_id: str, sa_id: str) -> ServiceAccount:
        self.project(org_id, project_id)
        with self.db.session() as s:
            row = repo.get_service_account(s, org_id, project_id, sa_id)
        if row is None:
            raise NotFound(f"No such service account: {sa_id}", param="service_account_id")
        return row

    def update_service_account(
        self, org_id: str, project_id: str, sa_id: str, body: dict[str, Any]
    ) -> ServiceAccount:
        self.service_account(org_id, project_id, sa_id)
        name = _name(body, required=False)
        role = _role(body, ("owner", "member")) if "role" in body else None
        with self.db.session() as s:
            row = repo.get_service_account(s, org_id, project_id, sa_id)
            assert row is not None
            row.name = name or row.name
            row.role = role or row.role
        changes = {k: v for k, v in (("name", name), ("role", role)) if v is not None}
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
        now = int(self.c.clock())
        with self.db.session() as s:
            revoked = repo.revoke_owned(s, org_id, sa_id, now)
            row = repo.get_service_account(s, org_id, project_id, sa_id)
            s.delete(row)
        for key_id in revoked:
            audit.record(self.db, "api_key.deleted", org_id, key_id, project_id=project_id)
        audit.record(self.db, "service_account.deleted", org_id, sa_id, project_id=project_id)
        return sa_id

    # --- users --------------------------------------------------------------------------------

    def add_user(self, org_id: str, email: str, *, name: str = "", role: str = "reader") -> OrgUser:
        """Add a person to the organisation (the operator CLI; the API has no sign-up)."""
        _role({"role": role}, ("owner", "reader"))
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
                added_at=int(self.c.clock()),
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

    def update_user(self, org_id: str, user_id: str, body: dict[str, Any]) -> OrgUser:
        self.user(org_id, user_id)
        role = _role(body, ("owner", "reader"))
        with self.db.session() as s:
            row = repo.get_user(s, org_id, user_id)
            assert row is not None
            row.role = role
        audit.record(self.db, "user.updated", org_id, user_id, changes_requested={"role": role})
        return row

    def delete_user(self, org_id: str, user_id: str) -> str:
        self.user(org_id, user_id)
        with self.db.session() as s:
            revoked = repo.revoke_owned(s, org_id, user_id, int(self.c.clock()))
            repo.remove_memberships(s, user_id)
            s.delete(repo.get_user(s, org_id, user_id))
        for key_id in revoked:
            audit.record(self.db, "api_key.deleted", org_id, key_id)
        audit.record(self.db, "user.deleted", org_id, user_id)
        return user_id

    # --- project users ------------------------------------------------------------------------

    def add_member(self, org_id: str, project_id: str, body: dict[str, Any]) -> tuple[ProjectMember, OrgUser]:
        self.project(org_id, project_id, active=True)
        role = _role(body, ("owner", "member"))
        user_id, email = body.get("user_id"), body.get("email")
        with self.db.session() as s:
            if isinstance(user_id, str):
                user = repo.get_user(s, org_id, user_id)
            elif isinstance(email, str):
                user = repo.user_by_email(s, org_id, email.strip().lower())
            else:
                raise InvalidRequest("Give 'user_id' or 'email'.", param="user_id")
            if user is None:
                raise NotFound(f"No such user: {user_id or email}", param="user_id")
            if repo.membership(s, project_id, user.id) is not None:
                raise Conflict(f"{user.id} is already a member of {project_id}.", param="user_id")
            member = ProjectMember(
                org_id=org_id, project_id=project_id, user_id=user.id, role=role, added_at=int(self.c.clock())
            )
            s.add(member)
        audit.record(self.db, "user.added", org_id, user.id, project_id=project_id, data={"role": role})
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
        self, org_id: str, project_id: str, user_id: str, body: dict[str, Any]
    ) -> tuple[ProjectMember, OrgUser]:
        self.member(org_id, project_id, user_id)
        role = _role(body, ("owner", "member"))
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
            revoked = repo.revoke_owned(s, org_id, user_id, int(self.c.clock()), project_id=project_id)
            s.delete(repo.membership(s, project_id, user_id))
        for key_id in revoked:
            audit.record(self.db, "api_key.deleted", org_id, key_id, project_id=project_id)
        audit.record(self.db, "user.deleted", org_id, user_id, project_id=project_id)
        return user_id

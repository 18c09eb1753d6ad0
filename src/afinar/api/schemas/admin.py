"""Wire shapes of the administration API (``client.admin.organization...`` in the SDK): the
request bodies, checked here and turned into the services' request objects, and the objects sent.

The checks are hand-written (a ``before`` validator per body) so that every message, ``param``
and the order of the checks stay those of OpenAI's admin API as Afinar has always answered them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from afinar.api.schemas.lists import listing
from afinar.errors import InvalidRequest
from afinar.services.api_keys import MAX_EXPIRY_SECONDS, READ_ONLY_SCOPE, NewAdminKey, ProjectKeyUpdate
from afinar.services.projects import PROJECT_ROLES, NewMember, NewProject, ProjectUpdate
from afinar.services.service_accounts import (
    DEFAULT_KEY_NAME,
    NewServiceAccount,
    NewServiceAccountKey,
    ServiceAccountUpdate,
)
from afinar.services.users import ORG_ROLES
from afinar.store.tables import ApiKey, AuditLog, OrgUser, Project, ProjectMember, ServiceAccount

__all__ = ["listing"]  # the admin routes build their pages with it

# --- request bodies --------------------------------------------------------------------------------


def _name(value: Any, param: str = "name") -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 256:
        raise InvalidRequest(f"'{param}' must be a non-empty string of at most 256 characters.", param=param)
    return value.strip()


def _optional_name(value: Any, param: str = "name") -> str | None:
    return None if value is None else _name(value, param)


def _role(value: Any, allowed: tuple[str, ...], param: str = "role") -> str:
    if value not in allowed:
        raise InvalidRequest(f"'{param}' must be one of {list(allowed)}.", param=param)
    return str(value)


def _expiry(value: Any, param: str = "expires_in_seconds") -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_EXPIRY_SECONDS:
        raise InvalidRequest(f"'{param}' must be an integer between 1 and {MAX_EXPIRY_SECONDS}.", param=param)
    return value


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True)


class AdminKeyCreate(_Body):
    """``POST /v1/organization/admin_api_keys``."""

    name: str
    expires_in_seconds: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _check(cls, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": _name(body.get("name")),
            "expires_in_seconds": _expiry(body.get("expires_in_seconds")),
        }

    def to_domain(self) -> NewAdminKey:
        return NewAdminKey(self.name, self.expires_in_seconds)


class ProjectCreate(_Body):
    """``POST /v1/organization/projects``."""

    name: str

    @model_validator(mode="before")
    @classmethod
    def _check(cls, body: dict[str, Any]) -> dict[str, Any]:
        return {"name": _name(body.get("name"))}

    def to_domain(self) -> NewProject:
        return NewProject(self.name)


class ProjectModify(_Body):
    """``POST /v1/organization/projects/{project_id}``."""

    name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _check(cls, body: dict[str, Any]) -> dict[str, Any]:
        return {"name": _optional_name(body.get("name"))}

    def to_domain(self) -> ProjectUpdate:
        return ProjectUpdate(self.name)


class ProjectKeyModify(_Body):
    """``POST /v1/organization/projects/{project_id}/api_keys/{key_id}`` (Afinar's: scopes, expiry)."""

    scopes: tuple[str, ...] | None = None
    expires_in_seconds: int | None = None
    given: frozenset[str] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _check(cls, body: dict[str, Any]) -> dict[str, Any]:
        scopes = body.get("scopes")
        if scopes is not None and (
            not isinstance(scopes, list) or not all(s == READ_ONLY_SCOPE for s in scopes)
        ):
            raise InvalidRequest(
                f"scopes must be [] (all permissions) or ['{READ_ONLY_SCOPE}'].", param="scopes"
            )
        return {
            "scopes": None if scopes is None else tuple(scopes),
            "expires_in_seconds": _expiry(body.get("expires_in_seconds")),
            "given": frozenset(k for k in ("scopes", "expires_in_seconds") if k in body),
        }

    def to_domain(self) -> ProjectKeyUpdate:
        return ProjectKeyUpdate(self.scopes, self.expires_in_seconds, self.given)


class ServiceAccountCreate(_Body):
    """``POST /v1/organization/projects/{project_id}/service_accounts``."""

    name: str
    create_service_account_only: bool = False
    expires_in_seconds: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _check(cls, body: dict[str, Any]) -> dict[str, Any]:
        name = _name(body.get("name"))
        only = bool(body.get("create_service_account_only"))
        expires = _expiry(body.get("expires_in_seconds"))
        if only and expires is not None:
            raise InvalidRequest(
                "expires_in_seconds cannot be given with create_service_account_only.",
                param="expires_in_seconds",
            )
        return {"name": name, "create_service_account_only": only, "expires_in_seconds": expires}

    def to_domain(self) -> NewServiceAccount:
        return NewServiceAccount(self.name, self.create_service_account_only, self.expires_in_seconds)


class ServiceAccountKeyCreate(_Body):
    """``POST .../service_accounts/{service_account_id}/api_keys``."""

    name: str = DEFAULT_KEY_NAME
    expires_in_seconds: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _check(cls, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": _optional_name(body.get("name")) or DEFAULT_KEY_NAME,
            "expires_in_seconds": _expiry(body.get("expires_in_seconds")),
        }

    def to_domain(self) -> NewServiceAccountKey:
        return NewServiceAccountKey(self.name, self.expires_in_seconds)


class ServiceAccountModify(_Body):
    """``POST .../service_accounts/{service_account_id}``: a new name and/or project role."""

    name: str | None = None
    role: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _check(cls, body: dict[str, Any]) -> dict[str, Any]:
        name = _optional_name(body.get("name"))
        role = _role(body.get("role"), PROJECT_ROLES) if "role" in body else None
        return {"name": name, "role": role}

    def to_domain(self) -> ServiceAccountUpdate:
        return ServiceAccountUpdate(self.name, self.role)


class UserModify(_Body):
    """``POST /v1/organization/users/{user_id}``: the organisation role."""

    role: str

    @model_validator(mode="before")
    @classmethod
    def _check(cls, body: dict[str, Any]) -> dict[str, Any]:
        return {"role": _role(body.get("role"), ORG_ROLES)}


class ProjectUserCreate(_Body):
    """``POST /v1/organization/projects/{project_id}/users``: a user (by id, else by email) and a role."""

    role: str
    user_id: str | None = None
    email: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _check(cls, body: dict[str, Any]) -> dict[str, Any]:
        role = _role(body.get("role"), PROJECT_ROLES)
        user_id, email = body.get("user_id"), body.get("email")
        return {
            "role": role,
            "user_id": user_id if isinstance(user_id, str) else None,
            "email": email if isinstance(email, str) else None,
        }

    def to_domain(self) -> NewMember:
        return NewMember(self.role, self.user_id, self.email)


class ProjectUserModify(_Body):
    """``POST /v1/organization/projects/{project_id}/users/{user_id}``: the project role."""

    role: str

    @model_validator(mode="before")
    @classmethod
    def _check(cls, body: dict[str, Any]) -> dict[str, Any]:
        return {"role": _role(body.get("role"), PROJECT_ROLES)}


# --- objects sent ----------------------------------------------------------------------------------


def deleted(object_: str, id_: str) -> dict[str, Any]:
    return {"object": object_, "id": id_, "deleted": True}


def admin_key(k: ApiKey, secret: str | None = None) -> dict[str, Any]:
    out = {
        "object": "organization.admin_api_key",
        "id": k.id,
        "name": k.name,
        "redacted_value": k.redacted,
        "created_at": k.created_at,
        "expires_at": k.expires_at,
        "last_used_at": None,
        "owner": {"type": "user", "object": "organization.user", "role": "owner", "id": k.owner_id},
    }
    if secret is not None:
        out["value"] = secret
    return out


def project(p: Project) -> dict[str, Any]:
    return {
        "object": "organization.project",
        "id": p.id,
        "name": p.name,
        "created_at": p.created_at,
        "archived_at": p.archived_at,
        "status": "archived" if p.archived_at is not None else "active",
    }


def service_account(a: ServiceAccount) -> dict[str, Any]:
    return {
        "object": "organization.project.service_account",
        "id": a.id,
        "name": a.name,
        "role": a.role,
        "created_at": a.created_at,
    }


def service_account_key(k: ApiKey, secret: str) -> dict[str, Any]:
    return {
        "object": "organization.project.service_account.api_key",
        "id": k.id,
        "name": k.name,
        "created_at": k.created_at,
        "expires_at": k.expires_at,
        "value": secret,
    }


def project_key(
    k: ApiKey, owner: ServiceAccount | tuple[OrgUser, str] | None, scopes: list[str]
) -> dict[str, Any]:
    if isinstance(owner, ServiceAccount):
        who: dict[str, Any] = {"type": "service_account", "service_account": service_account(owner)}
        active = owner.role != "none"
    elif owner is not None:
        user, role = owner
        who = {
            "type": "user",
            "user": {
                "object": "organization.project.user",
                "id": user.id,
                "name": user.name,
                "email": user.email,
                "role": role,
                "created_at": user.added_at,
            },
        }
        active = True
    else:
        who, active = {"type": None}, True
    return {
        "object": "organization.project.api_key",
        "id": k.id,
        "name": k.name,
        "redacted_value": k.redacted,
        "created_at": k.created_at,
        "expires_at": k.expires_at,
        "last_used_at": None,
        "owner": who,
        "owner_project_access": "active" if active else "inactive",
        "scopes": scopes,  # additive: [] or ["api.all.read"] (a reader key)
    }


def org_user(u: OrgUser, projects: list[tuple[ProjectMember, str]]) -> dict[str, Any]:
    return {
        "object": "organization.user",
        "id": u.id,
        "name": u.name,
        "email": u.email,
        "role": u.role,
        "added_at": u.added_at,
        "projects": {
            "object": "list",
            "data": [{"id": m.project_id, "name": name, "role": m.role} for m, name in projects],
        },
    }


def project_user(m: ProjectMember, u: OrgUser) -> dict[str, Any]:
    return {
        "object": "organization.project.user",
        "id": u.id,
        "name": u.name,
        "email": u.email,
        "role": m.role,
        "added_at": m.added_at,
    }


def audit_entry(e: AuditLog, project_names: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "object": "organization.audit_log",
        "id": e.id,
        "type": e.type,
        "effective_at": e.effective_at,
        "actor": e.actor,
        e.type: e.details,
    }
    if e.project_id:
        out["project"] = {"id": e.project_id, "name": project_names.get(e.project_id)}
    return out

"""Wire shapes of the administration API (``client.admin.organization...`` in the SDK)."""

from __future__ import annotations

from typing import Any

from afinar.api.schemas.lists import listing
from afinar.store.tables import ApiKey, AuditLog, OrgUser, Project, ProjectMember, ServiceAccount

__all__ = ["listing"]  # the admin routes build their pages with it


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

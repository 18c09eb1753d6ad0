"""Who is calling: the authenticated key, its organisation, project and role (docs/admin.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """Who is calling: the organisation (and key) every object is scoped to."""

    org_id: str
    org_slug: str
    key_id: str
    project_id: str | None = None
    role: str = "owner"  # owner | member | reader | none: what the key may do in its project
    is_admin: bool = False  # an admin key: may call /v1/organization/*
    owner_type: str | None = None  # user | service_account (the audit log's actor)
    owner_id: str | None = None
    owner_email: str | None = None
    in_default_project: bool = False  # sees rows written without a project too
    # OpenAI-Organization / OpenAI-Project headers that named nothing on this server and were ignored
    ignored_headers: tuple[str, ...] = ()

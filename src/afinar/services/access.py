"""Who may call which route (docs/admin.md), and the project scope of the rest of a request.

``/v1/organization/*`` and ``/v1/fine_tuning/checkpoints/{checkpoint}/permissions[/{id}]`` need
an admin key; elsewhere owners and members may do everything in their project, readers may read and
call models, role ``none`` nothing.
"""

from __future__ import annotations

import re

from afinar.domain.principal import Principal
from afinar.errors import PermissionDenied
from afinar.store import admin as repo

ADMIN_PREFIX = "/v1/organization"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# POST routes that change nothing stored: a reader may call them.
READER_POSTS = frozenset(
    {"/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/moderations", "/v1/afinar/estimates"}
)


# Outside /v1/organization, OpenAI's admin-key routes: sharing a checkpoint with other projects.
ADMIN_PATHS = re.compile(r"/v1/fine_tuning/checkpoints/.+/permissions(/[^/]+)?")


def is_admin_path(path: str) -> bool:
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/") or bool(ADMIN_PATHS.fullmatch(path))


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

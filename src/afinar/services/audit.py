"""The audit log: who (which API key, owned by which user or service account) did what, and when.

Services record an entry with one call right after the action commits; the actor is the request's
principal, bound once per request by the API (``bind``), so a service need not be told who calls.
Entries hold ids, types and sizes, never content. Writing one never fails the action it records:
an error is logged instead.

Types: OpenAI's (``api_key.created``, ``api_key.updated``, ``api_key.deleted``, ``project.created``,
``project.updated``, ``project.archived``, ``service_account.created|updated|deleted``,
``user.added|updated|deleted``) and Afinar's own, in the same shape: ``file.uploaded``,
``file.downloaded``, ``file.deleted``, ``fine_tuning.job.created``, ``fine_tuning.job.cancelled``,
``model.deleted``, ``model.downloaded``, ``model.exported`` (with its ``format``).
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from afinar import ids
from afinar.domain.principal import Principal
from afinar.store import admin as admin_repo
from afinar.store import audit as repo
from afinar.store.db import Database
from afinar.store.pagination import Page
from afinar.store.tables import AuditLog

log = logging.getLogger("afinar.audit")

FILE_UPLOADED = "file.uploaded"
FILE_DOWNLOADED = "file.downloaded"
FILE_DELETED = "file.deleted"
JOB_CREATED = "fine_tuning.job.created"
JOB_CANCELLED = "fine_tuning.job.cancelled"
MODEL_DELETED = "model.deleted"
MODEL_DOWNLOADED = "model.downloaded"
MODEL_EXPORTED = "model.exported"


@dataclass(frozen=True)
class Actor:
    key_id: str
    owner_type: str | None = None  # user | service_account | None (an admin key without an owner)
    owner_id: str | None = None
    email: str | None = None

    def as_json(self) -> dict[str, Any]:
        api_key: dict[str, Any] = {"id": self.key_id}
        if self.owner_type == "user":
            api_key |= {"type": "user", "user": {"id": self.owner_id, "email": self.email}}
        elif self.owner_type == "service_account":
            api_key |= {"type": "service_account", "service_account": {"id": self.owner_id}}
        return {"type": "api_key", "api_key": api_key}


_actor: ContextVar[Actor | None] = ContextVar("afinar_audit_actor", default=None)


def actor_of(p: Principal) -> Actor:
    return Actor(key_id=p.key_id, owner_type=p.owner_type, owner_id=p.owner_id, email=p.owner_email)


def bind(p: Principal) -> None:
    """Make ``p`` the actor of every entry recorded in the rest of the current request."""
    _actor.set(actor_of(p))


def current_actor() -> Actor | None:
    return _actor.get()


def record(
    db: Database,
    type_: str,
    org_id: str,
    resource_id: str,
    *,
    project_id: str | None = None,
    actor: Actor | None = None,
    **fields: Any,
) -> None:
    """Append one entry: ``{"<type>": {"id": resource_id, **fields}}``, never raising.

    Without ``actor``/``project_id``, the request's bound actor and project scope are used; outside a
    request (worker, operator CLI) the actor is empty.
    """
    who = actor or _actor.get()
    if project_id is None and (scope := admin_repo.current_scope()) is not None:
        project_id = scope.project_id
    row = AuditLog(
        id=ids.new_id("audit_log-"),
        org_id=org_id,
        project_id=project_id,
        type=type_,
        effective_at=int(db.now()),
        resource_id=resource_id,
        actor_key_id=who.key_id if who else None,
        actor_owner_id=who.owner_id if who else None,
        actor=who.as_json() if who else None,
        details={"id": resource_id, **fields},
    )
    try:
        repo.append(db, row)
    except Exception:
        log.exception("audit entry %s for %s %s could not be written", type_, org_id, resource_id)


def entries(db: Database, org_id: str, q: repo.AuditQuery) -> tuple[Page[AuditLog], dict[str, str]]:
    """A page of entries, newest first, and the names of the projects they name."""
    page = repo.page(db, org_id, q)
    with db.session() as s:
        names = admin_repo.project_names(s, org_id, {r.project_id for r in page.items if r.project_id})
    return page, names


def verify(db: Database, org_id: str) -> tuple[int, str | None]:
    """(entries whose hashes check out, the id of the first entry that breaks the chain or None)."""
    return repo.verify(db, org_id)

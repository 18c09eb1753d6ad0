"""The audit log table: append (hash-chained per organisation), page through, verify the chain."""

from __future__ import annotations

import hashlib
import json
import operator
import random
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from afinar.store.db import Database
from afinar.store.pagination import Page
from afinar.store.tables import AuditLog

ATTEMPTS = 40  # writers that lose the race back off (jittered) and try again


def entry_hash(prev_hash: str, row: AuditLog) -> str:
    """SHA-256 over the previous hash and the row's canonical JSON (everything but seq and hashes)."""
    body = {
        "id": row.id,
        "org_id": row.org_id,
        "project_id": row.project_id,
        "type": row.type,
        "effective_at": row.effective_at,
        "resource_id": row.resource_id,
        "actor": row.actor,
        "details": row.details,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def append(db: Database, row: AuditLog) -> AuditLog:
    """Insert ``row`` at the head of its organisation's chain.

    Two writers that read the same head collide on the unique ``(org_id, prev_hash)``; the loser
    reads the new head and tries again, so the chain never forks.
    """
    for attempt in range(ATTEMPTS):
        try:
            with db.session() as s:
                head = s.scalar(
                    select(AuditLog.hash)
                    .where(AuditLog.org_id == row.org_id)
                    .order_by(AuditLog.seq.desc())
                    .limit(1)
                )
                fresh = AuditLog(
                    id=row.id,
                    org_id=row.org_id,
                    project_id=row.project_id,
                    type=row.type,
                    effective_at=row.effective_at,
                    resource_id=row.resource_id,
                    actor_key_id=row.actor_key_id,
                    actor_owner_id=row.actor_owner_id,
                    actor=row.actor,
                    details=row.details,
                    prev_hash=head or "",
                )
                fresh.hash = entry_hash(fresh.prev_hash, fresh)
                s.add(fresh)
            return fresh
        except IntegrityError:
            if attempt == ATTEMPTS - 1:
                raise
            # Without a pause, the same writers collide again at once: on a busy machine a writer
            # could lose every retry and its entry would be dropped. Back off, jittered, ≤ 0.2 s.
            time.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class AuditQuery:
    after: str | None = None
    before: str | None = None
    limit: int = 20
    types: list[str] = field(default_factory=list)
    project_ids: list[str] = field(default_factory=list)
    resource_ids: list[str] = field(default_factory=list)
    actor_ids: list[str] = field(default_factory=list)
    gt: int | None = None
    gte: int | None = None
    lt: int | None = None
    lte: int | None = None


def page(db: Database, org_id: str, q: AuditQuery) -> Page[AuditLog]:
    """Newest first. ``after`` moves to older entries, ``before`` to newer ones."""
    stmt = select(AuditLog).where(AuditLog.org_id == org_id)
    conditions: list[Any] = []
    if q.types:
        conditions.append(AuditLog.type.in_(q.types))
    if q.project_ids:
        conditions.append(AuditLog.project_id.in_(q.project_ids))
    if q.resource_ids:
        conditions.append(AuditLog.resource_id.in_(q.resource_ids))
    if q.actor_ids:
        conditions.append(
            or_(AuditLog.actor_key_id.in_(q.actor_ids), AuditLog.actor_owner_id.in_(q.actor_ids))
        )
    for bound, compare in (
        (q.gt, operator.gt),
        (q.gte, operator.ge),
        (q.lt, operator.lt),
        (q.lte, operator.le),
    ):
        if bound is not None:
            conditions.append(compare(AuditLog.effective_at, bound))
    stmt = stmt.where(*conditions)
    with db.session() as s:
        for cursor, newer in ((q.after, False), (q.before, True)):
            if cursor:
                anchor = s.scalar(
                    select(AuditLog.seq).where(AuditLog.org_id == org_id, AuditLog.id == cursor)
                )
                if anchor is not None:
                    stmt = stmt.where(AuditLog.seq > anchor if newer else AuditLog.seq < anchor)
        if q.before and not q.after:
            rows = list(s.scalars(stmt.order_by(AuditLog.seq.asc()).limit(q.limit + 1)))
            return Page(items=list(reversed(rows[: q.limit])), has_more=len(rows) > q.limit)
        rows = list(s.scalars(stmt.order_by(AuditLog.seq.desc()).limit(q.limit + 1)))
    return Page(items=rows[: q.limit], has_more=len(rows) > q.limit)


def verify(db: Database, org_id: str) -> tuple[int, str | None]:
    """Walk the chain from its start; return (entries verified, id of the first bad entry or None)."""
    with db.session() as s:
        rows = list(s.scalars(select(AuditLog).where(AuditLog.org_id == org_id).order_by(AuditLog.seq)))
    by_prev = {r.prev_hash: r for r in rows}
    linked: set[str] = set()
    head = ""
    while (row := by_prev.get(head)) is not None:
        if entry_hash(row.prev_hash, row) != row.hash:
            return len(linked), row.id
        linked.add(row.id)
        head = row.hash
    stray = next((r.id for r in rows if r.id not in linked), None)  # after a deleted or rewritten entry
    return len(linked), stray

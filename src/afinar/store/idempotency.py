"""Idempotency keys (``idempotency_keys``): who holds a key, and the first answer given under it.

A key is taken by an INSERT that the unique constraint on (organisation, project, key) lets only
one request win, on SQLite and PostgreSQL alike, whichever node sends it. The winner works, then
``finish`` stores its answer (or ``release`` gives the key back after a server error); the losers
read the row (``Held``) and answer from it. Times are the database clock's (``db.now()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from afinar.store.db import Database
from afinar.store.tables import IdempotencyKey


@dataclass(frozen=True)
class Held:
    """A key's row: taken by this call (``taken``), or the earlier request's (in flight when
    ``status_code`` is None)."""

    seq: int
    taken: bool
    method: str
    path: str
    fingerprint: str | None
    status_code: int | None
    response: dict[str, Any] | None


def _held(row: IdempotencyKey, taken: bool) -> Held:
    return Held(row.seq, taken, row.method, row.path, row.fingerprint, row.status_code, row.response)


def take(
    db: Database,
    *,
    org_id: str,
    project_id: str | None,
    key: str,
    method: str,
    path: str,
    fingerprint: str | None,
    expired_before: float,
    abandoned_before: float,
) -> Held:
    """Take ``key`` for this request, or return the row that holds it.

    A row created before ``expired_before`` is past its retention and is replaced; an in-flight row
    created before ``abandoned_before`` (its node died mid-request) is taken over by a
    compare-and-set, so one request wins it.
    """
    scope = project_id or ""
    for _ in range(5):  # a row released or expired between our INSERT and our SELECT: try again
        now = int(db.now())
        try:
            with db.session() as s:
                row = IdempotencyKey(
                    org_id=org_id,
                    project_id=scope,
                    key=key,
                    method=method,
                    path=path,
                    fingerprint=fingerprint,
                    created_at=now,
                )
                s.add(row)
                s.flush()
                return _held(row, True)
        except IntegrityError:
            pass
        with db.session() as s:
            held_row = s.scalar(
                select(IdempotencyKey).where(
                    IdempotencyKey.org_id == org_id,
                    IdempotencyKey.project_id == scope,
                    IdempotencyKey.key == key,
                )
            )
            if held_row is None:
                continue
            if held_row.created_at < expired_before:
                s.delete(held_row)
                continue
            if held_row.status_code is None and held_row.created_at < abandoned_before:
                res = s.execute(
                    update(IdempotencyKey)
                    .where(
                        IdempotencyKey.seq == held_row.seq,
                        IdempotencyKey.status_code.is_(None),
                        IdempotencyKey.created_at == held_row.created_at,
                    )
                    .values(method=method, path=path, fingerprint=fingerprint, created_at=now)
                    .execution_options(synchronize_session=False)
                )
                if res.rowcount == 1:  # type: ignore[attr-defined]
                    return Held(held_row.seq, True, method, path, fingerprint, None, None)
                continue
            return _held(held_row, False)
    raise RuntimeError(f"idempotency key {key!r} kept changing hands")


def finish(
    db: Database, seq: int, *, fingerprint: str | None, status_code: int, response: dict[str, Any]
) -> None:
    """Store the answer of the request that took the key (the ORM write seals ``response``)."""
    with db.session() as s:
        row = s.get(IdempotencyKey, seq)
        if row is None or row.status_code is not None:
            return  # swept, or taken over after we were thought dead: the newer holder answers
        row.fingerprint = fingerprint
        row.status_code = status_code
        row.response = response


def release(db: Database, seq: int) -> None:
    """Give the key back (the request failed with a server error): a retry runs again."""
    with db.session() as s:
        s.execute(
            delete(IdempotencyKey).where(IdempotencyKey.seq == seq, IdempotencyKey.status_code.is_(None))
        )


def sweep(db: Database, before: float) -> int:
    """Forget every key created before ``before``; returns how many."""
    with db.session() as s:
        res = s.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < before))
        return int(res.rowcount or 0)  # type: ignore[attr-defined]


def count(db: Database, org_id: str | None = None) -> int:
    """How many keys are held (of ``org_id``, or of everyone)."""
    with db.session() as s:
        stmt = select(IdempotencyKey.seq)
        if org_id is not None:
            stmt = stmt.where(IdempotencyKey.org_id == org_id)
        return len(list(s.scalars(stmt)))

"""Worker rows (``workers``), the jobs each holds, and the mark of a job no worker can train."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from afinar.store.tables import Job, WorkerRecord


def upsert(
    s: Session, name: str, *, host: str, lanes: dict[str, int], devices: dict[str, Any], now: float
) -> None:
    """Register ``name`` (again): started now, heartbeat now."""
    row = s.scalar(select(WorkerRecord).where(WorkerRecord.id == name))
    if row is None:
        row = WorkerRecord(id=name)
        s.add(row)
    row.host = host
    row.lanes = dict(lanes)
    row.devices = dict(devices)
    row.started_at = int(now)
    row.heartbeat_at = now


def touch(s: Session, name: str, now: float) -> bool:
    """The heartbeat; False when the row is gone (pruned): the worker registers again."""
    res = s.execute(update(WorkerRecord).where(WorkerRecord.id == name).values(heartbeat_at=now))
    return bool(res.rowcount)  # type: ignore[attr-defined]


def remove(s: Session, name: str) -> None:
    s.execute(delete(WorkerRecord).where(WorkerRecord.id == name))


def prune(s: Session, before: float) -> int:
    """Forget workers silent since ``before`` (long dead); returns how many."""
    res = s.execute(delete(WorkerRecord).where(WorkerRecord.heartbeat_at < before))
    return int(res.rowcount or 0)  # type: ignore[attr-defined]


def all_rows(s: Session) -> list[WorkerRecord]:
    return list(s.scalars(select(WorkerRecord).order_by(WorkerRecord.seq)))


def lease_owners(s: Session, now: float) -> list[str]:
    """The owner of every live job lease (``<worker>`` or ``<worker>/<lane>-<i>``), one per job."""
    stmt = select(Job.lease_owner).where(Job.lease_owner.is_not(None), Job.lease_expires_at >= now)
    return [owner for owner in s.scalars(stmt) if owner]


def mark_waiting(s: Session, job_id: str, reason: str) -> Job | None:
    """Record, once, what ``job_id`` waits for; the job when this call set it, None when it was set
    already (by this worker or another: a compare-and-set, so the event is written once)."""
    res = s.execute(
        update(Job).where(Job.id == job_id, Job.waiting_for.is_(None)).values(waiting_for=reason[:256])
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return s.scalar(select(Job).where(Job.id == job_id))

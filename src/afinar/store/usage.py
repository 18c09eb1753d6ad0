"""Usage ledger rows (insert-once by natural key), training progress, and spend limits."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from afinar.store.db import upsert_insert
from afinar.store.tables import Job, Project, SpendLimit, TrainingProgress, UsageRecord


def insert_once(s: Session, values: dict[str, Any]) -> bool:
    """Append a usage record unless one with its key exists; True when this call wrote it."""
    stmt = (
        upsert_insert(s)(UsageRecord)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(UsageRecord.seq)  # rowcount is not reliable here (psycopg reports -1)
    )
    return s.execute(stmt).first() is not None


def get(s: Session, key: str) -> UsageRecord | None:
    return s.scalar(select(UsageRecord).where(UsageRecord.key == key))


def between(s: Session, org_id: str, start: int, end: int, *, kind: str | None = None) -> list[UsageRecord]:
    """An organisation's records with ``start <= occurred_at < end``, oldest first."""
    stmt = select(UsageRecord).where(
        UsageRecord.org_id == org_id, UsageRecord.occurred_at >= start, UsageRecord.occurred_at < end
    )
    if kind is not None:
        stmt = stmt.where(UsageRecord.kind == kind)
    return list(s.scalars(stmt.order_by(UsageRecord.occurred_at, UsageRecord.key)))


def inference_cost(s: Session, org_id: str, start: int, end: int, project_id: str | None = None) -> int:
    """Micro-dollars of inference in ``[start, end)`` (rated when written), summed by the database."""
    stmt = select(func.coalesce(func.sum(UsageRecord.input_cost + UsageRecord.output_cost), 0)).where(
        UsageRecord.org_id == org_id,
        UsageRecord.kind == "inference",
        UsageRecord.occurred_at >= start,
        UsageRecord.occurred_at < end,
    )
    if project_id is not None:
        stmt = stmt.where(UsageRecord.project_id == project_id)
    return int(s.scalar(stmt) or 0)


# --- training progress ------------------------------------------------------------------------


def note_progress(s: Session, job_id: str, org_id: str, step: int, trained_tokens: int, now: int) -> None:
    row = s.get(TrainingProgress, job_id)
    if row is None:
        s.add(
            TrainingProgress(
                job_id=job_id, org_id=org_id, step=step, trained_tokens=trained_tokens, updated_at=now
            )
        )
    else:
        row.step, row.trained_tokens, row.updated_at = step, trained_tokens, now


def progress(s: Session, job_id: str) -> TrainingProgress | None:
    return s.get(TrainingProgress, job_id)


def unbilled_jobs(s: Session, org_id: str, status: str) -> list[tuple[Job, TrainingProgress]]:
    """Jobs in ``status`` that trained something and have no training record yet."""
    billed = select(UsageRecord.job_id).where(
        UsageRecord.org_id == org_id, UsageRecord.kind == "training", UsageRecord.job_id.is_not(None)
    )
    stmt = (
        select(Job, TrainingProgress)
        .join(TrainingProgress, and_(TrainingProgress.job_id == Job.id))
        .where(
            Job.org_id == org_id,
            Job.status == status,
            TrainingProgress.trained_tokens > 0,
            Job.id.not_in(billed),
        )
        .order_by(Job.seq)
    )
    return [(job, prog) for job, prog in s.execute(stmt)]


# --- spend limits -----------------------------------------------------------------------------


def get_limit(s: Session, org_id: str, scope: str) -> SpendLimit | None:
    return s.scalar(select(SpendLimit).where(SpendLimit.org_id == org_id, SpendLimit.scope == scope))


def put_limit(
    s: Session, org_id: str, scope: str, project_id: str | None, threshold_cents: int, now: int
) -> SpendLimit:
    """Create or replace (an upsert: two concurrent writers cannot both insert)."""
    stmt = (
        upsert_insert(s)(SpendLimit)
        .values(
            org_id=org_id,
            scope=scope,
            project_id=project_id,
            currency="USD",
            interval="month",
            threshold_cents=threshold_cents,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_update(
            index_elements=["org_id", "scope"], set_={"threshold_cents": threshold_cents, "updated_at": now}
        )
    )
    s.execute(stmt)
    row = s.scalar(
        select(SpendLimit)
        .where(SpendLimit.org_id == org_id, SpendLimit.scope == scope)
        .execution_options(populate_existing=True)
    )
    assert row is not None
    return row


def delete_limit(s: Session, org_id: str, scope: str) -> bool:
    row = get_limit(s, org_id, scope)
    if row is None:
        return False
    s.delete(row)
    return True


def project(s: Session, org_id: str, project_id: str) -> Project | None:
    return s.scalar(select(Project).where(Project.id == project_id, Project.org_id == org_id))

"""Job, event, checkpoint and fine-tuned model rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Text, cast, delete, or_, select
from sqlalchemy.orm import Session

from afinar import ids
from afinar.store.db import session_now
from afinar.store.pagination import Page, paginate
from afinar.store.tables import Checkpoint, FineTunedModel, Job, JobEvent


def get(s: Session, org_id: str, job_id: str) -> Job | None:
    return s.scalar(select(Job).where(Job.id == job_id, Job.org_id == org_id))


def get_any(s: Session, job_id: str) -> Job | None:
    return s.scalar(select(Job).where(Job.id == job_id))


def list_page(
    s: Session,
    org_id: str,
    *,
    after: str | None,
    limit: int,
    metadata: dict[str, str] | None,
    no_metadata: bool,
) -> Page[Job]:
    stmt = select(Job).where(Job.org_id == org_id)
    if no_metadata:
        # A JSON column stores Python's None as the JSON ``null`` (SQL NULL only in older rows).
        stmt = stmt.where(or_(Job.job_metadata.is_(None), cast(Job.job_metadata, Text) == "null"))
    # JSON paths differ between SQLite and PostgreSQL (and SQLite's cannot quote every key OpenAI
    # allows): the metadata pairs are matched in Python as the page is read.
    keep = (lambda j: _matches(j.job_metadata, metadata)) if metadata else None
    return paginate(s, stmt, Job, after=after, limit=limit, desc=True, keep=keep)


def _matches(meta: dict[str, Any] | None, wanted: dict[str, str]) -> bool:
    return bool(meta) and all((meta or {}).get(k) == v for k, v in wanted.items())


def add_event(
    s: Session,
    job: Job,
    message: str,
    *,
    level: str = "info",
    type_: str = "message",
    data: dict[str, Any] | None = None,
) -> JobEvent:
    ev = JobEvent(
        id=ids.event_id(),
        job_id=job.id,
        org_id=job.org_id,
        created_at=int(session_now(s)),
        level=level,
        message=message,
        type=type_,
        data=data,
    )
    s.add(ev)
    return ev


def events_page(s: Session, job_id: str, *, after: str | None, limit: int) -> Page[JobEvent]:
    stmt = select(JobEvent).where(JobEvent.job_id == job_id)
    return paginate(s, stmt, JobEvent, after=after, limit=limit, desc=True)


def metrics_events(s: Session, job_id: str) -> list[JobEvent]:
    stmt = (
        select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.type == "metrics").order_by(JobEvent.seq)
    )
    return list(s.scalars(stmt))


def drop_metrics_after(s: Session, job_id: str, step: int) -> None:
    """Forget per-step records past a checkpoint we resume from: those steps run again."""
    for ev in metrics_events(s, job_id):
        if ev.data and int(ev.data.get("step", 0)) > step:
            s.delete(ev)
    for row in s.scalars(
        select(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.step_number > step)
    ):
        s.delete(row)


def checkpoints(s: Session, job_id: str) -> list[Checkpoint]:
    stmt = select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.step_number.desc())
    return list(s.scalars(stmt))


def checkpoint_by_name(s: Session, org_id: str, name: str) -> Checkpoint | None:
    return s.scalar(select(Checkpoint).where(Checkpoint.model_name == name, Checkpoint.org_id == org_id))


def get_model(s: Session, org_id: str, name: str) -> FineTunedModel | None:
    return s.scalar(select(FineTunedModel).where(FineTunedModel.id == name, FineTunedModel.org_id == org_id))


def list_models(s: Session, org_id: str) -> list[FineTunedModel]:
    return list(
        s.scalars(select(FineTunedModel).where(FineTunedModel.org_id == org_id).order_by(FineTunedModel.seq))
    )


def delete_model(s: Session, org_id: str, name: str) -> None:
    model = get_model(s, org_id, name)
    if model is None:
        return
    s.execute(delete(Checkpoint).where(Checkpoint.job_id == model.job_id))
    s.delete(model)

"""Eval, eval run, output item and eval gate rows.

Runs are claimed, fenced and revoked like jobs, by ``queue/leases.py`` (``claim_run``,
``fence_run``, ``revoke_run``): a run deleted here takes its lease with it, so the worker's next
fenced write fails with ``LeaseLost`` and it stops.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from afinar.store.db import session_now
from afinar.store.pagination import Page, paginate
from afinar.store.tables import Eval, EvalGate, EvalOutputItem, EvalRun, Job

# --- evals ----------------------------------------------------------------------------------------


def get_eval(s: Session, org_id: str, eval_id: str) -> Eval | None:
    return s.scalar(select(Eval).where(Eval.id == eval_id, Eval.org_id == org_id))


def list_evals(
    s: Session, org_id: str, *, after: str | None, limit: int, desc: bool, by_updated: bool
) -> Page[Eval]:
    stmt = select(Eval).where(Eval.org_id == org_id)
    if not by_updated:
        return paginate(s, stmt, Eval, after=after, limit=limit, desc=desc)
    rows = sorted(s.scalars(stmt), key=lambda e: (e.updated_at, e.seq), reverse=desc)
    if after:
        idx = next((i for i, e in enumerate(rows) if e.id == after), None)
        rows = rows[idx + 1 :] if idx is not None else rows
    return Page(items=rows[:limit], has_more=len(rows) > limit)


def delete_eval(s: Session, ev: Eval) -> None:
    run_ids = list(s.scalars(select(EvalRun.id).where(EvalRun.eval_id == ev.id)))
    if run_ids:
        s.execute(delete(EvalOutputItem).where(EvalOutputItem.run_id.in_(run_ids)))
        s.execute(delete(EvalRun).where(EvalRun.id.in_(run_ids)))
    s.delete(ev)


# --- runs -----------------------------------------------------------------------------------------


def get_run(s: Session, org_id: str, eval_id: str, run_id: str) -> EvalRun | None:
    return s.scalar(
        select(EvalRun).where(EvalRun.id == run_id, EvalRun.eval_id == eval_id, EvalRun.org_id == org_id)
    )


def get_run_any(s: Session, run_id: str) -> EvalRun | None:
    return s.scalar(select(EvalRun).where(EvalRun.id == run_id).execution_options(populate_existing=True))


def list_runs(
    s: Session, org_id: str, eval_id: str, *, after: str | None, limit: int, desc: bool, status: str | None
) -> Page[EvalRun]:
    stmt = select(EvalRun).where(EvalRun.eval_id == eval_id, EvalRun.org_id == org_id)
    if status:
        stmt = stmt.where(EvalRun.status == status)
    return paginate(s, stmt, EvalRun, after=after, limit=limit, desc=desc)


def runs_of_job(s: Session, job_id: str) -> list[EvalRun]:
    return list(s.scalars(select(EvalRun).where(EvalRun.job_id == job_id).order_by(EvalRun.seq)))


def delete_run(s: Session, run: EvalRun) -> None:
    s.execute(delete(EvalOutputItem).where(EvalOutputItem.run_id == run.id))
    s.delete(run)


# --- output items -----------------------------------------------------------------------------------


def list_items(
    s: Session, run_id: str, *, after: str | None, limit: int, desc: bool, status: str | None
) -> Page[EvalOutputItem]:
    stmt = select(EvalOutputItem).where(EvalOutputItem.run_id == run_id)
    if status:
        stmt = stmt.where(EvalOutputItem.status == status)
    return paginate(s, stmt, EvalOutputItem, after=after, limit=limit, desc=desc)


def get_item(s: Session, run_id: str, item_id: str) -> EvalOutputItem | None:
    return s.scalar(
        select(EvalOutputItem).where(EvalOutputItem.run_id == run_id, EvalOutputItem.id == item_id)
    )


def all_items(s: Session, run_id: str) -> list[EvalOutputItem]:
    stmt = (
        select(EvalOutputItem)
        .where(EvalOutputItem.run_id == run_id)
        .order_by(EvalOutputItem.datasource_item_id)
    )
    return list(s.scalars(stmt))


def done_item_ids(s: Session, run_id: str) -> set[int]:
    return set(s.scalars(select(EvalOutputItem.datasource_item_id).where(EvalOutputItem.run_id == run_id)))


# --- gates ----------------------------------------------------------------------------------------


def add_gate(s: Session, job: Job, spec: dict[str, Any]) -> EvalGate:
    """Store a checked gate for ``job``, inside the transaction that creates the job."""
    gate = EvalGate(
        job_id=job.id,
        org_id=job.org_id,
        eval_id=spec["eval_id"],
        spec=spec,
        status="pending",
        verdict=None,
        created_at=int(session_now(s)),
    )
    s.add(gate)
    return gate


def get_gate(s: Session, job_id: str) -> EvalGate | None:
    return s.scalar(select(EvalGate).where(EvalGate.job_id == job_id))

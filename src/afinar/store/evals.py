"""Eval, eval run, output item and eval gate rows; the claim/lease/fence of queued eval runs.

Runs are claimed like jobs (``queue/leases.py``): a claim bumps ``lease_token``, every later write
of the worker is fenced by it, and cancelling or deleting a run bumps (or removes) it, so the
worker's next write fails with ``LeaseLost`` and it stops. Gate runs (``job_id`` set) are run by
the job's own worker and never claimed from the queue.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session

from afinar.errors import LeaseLost
from afinar.store.db import Database, session_now
from afinar.store.pagination import Page, paginate
from afinar.store.tables import Eval, EvalGate, EvalOutputItem, EvalRun

QUEUED, IN_PROGRESS, COMPLETED, FAILED, CANCELED = "queued", "in_progress", "completed", "failed", "canceled"
FINISHED = (COMPLETED, FAILED, CANCELED)


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


def revoke(run: EvalRun) -> None:
    """Take the run away from the worker running it: its next fenced write fails."""
    run.lease_token = run.lease_token + 1
    run.lease_owner = None
    run.lease_expires_at = None


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


# --- the queue ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunLease:
    run_id: str
    token: int
    owner: str


def claim_run(db: Database, owner: str, lease_seconds: float) -> RunLease | None:
    """Take the oldest queued (or abandoned) standalone run, or None; compare-and-set on the token."""
    now = db.now()
    expired = or_(EvalRun.lease_expires_at.is_(None), EvalRun.lease_expires_at < now)
    free = or_(EvalRun.lease_owner.is_(None), expired)
    claimable = and_(EvalRun.job_id.is_(None), EvalRun.status.in_([QUEUED, IN_PROGRESS]), free)
    with db.session() as s:
        candidates = list(
            s.execute(select(EvalRun.id, EvalRun.lease_token).where(claimable).order_by(EvalRun.seq).limit(5))
        )
    for run_id, token in candidates:
        with db.session() as s:
            res = s.execute(
                update(EvalRun)
                .where(EvalRun.id == run_id, EvalRun.lease_token == token, claimable)
                .values(lease_owner=owner, lease_token=token + 1, lease_expires_at=now + lease_seconds)
            )
            if res.rowcount == 1:  # type: ignore[attr-defined]
                return RunLease(run_id, token + 1, owner)
    return None


def take(s: Session, run: EvalRun, owner: str, lease_seconds: float) -> RunLease:
    """Lease a run the caller created itself (gate runs), inside the caller's transaction."""
    run.lease_token = (run.lease_token or 0) + 1
    run.lease_owner = owner
    run.lease_expires_at = session_now(s) + lease_seconds
    return RunLease(run.id, run.lease_token, owner)


def fence(s: Session, lease: RunLease, lease_seconds: float | None = None) -> EvalRun:
    """Inside a transaction: prove the lease still holds (extending it) and return the run."""
    values: dict[str, object] = {"lease_owner": lease.owner}
    if lease_seconds is not None:
        values["lease_expires_at"] = session_now(s) + lease_seconds
    res = s.execute(
        update(EvalRun).where(EvalRun.id == lease.run_id, EvalRun.lease_token == lease.token).values(**values)
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        raise LeaseLost(f"lease on eval run {lease.run_id} was lost")
    run = get_run_any(s, lease.run_id)
    assert run is not None
    return run


# --- gates ----------------------------------------------------------------------------------------


def get_gate(s: Session, job_id: str) -> EvalGate | None:
    return s.scalar(select(EvalGate).where(EvalGate.job_id == job_id))

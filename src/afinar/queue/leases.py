"""A database-backed work queue: claim with a lease, heartbeat, fenced writes, release.

One implementation serves every leased table (``_Leased``: fine-tuning jobs, standalone eval
runs, webhook deliveries through queue/webhooks.py), each row carrying ``lease_owner``,
``lease_token`` and ``lease_expires_at``. A claim is a compare-and-set that increments
``lease_token``. Every later write of that worker names the token it got; when someone else has
claimed the row since (the lease expired, or it was cancelled, which also bumps the token), the
write finds no row and raises ``LeaseLost`` instead of committing.

Jobs: ``claim`` / ``fence`` / ``heartbeat`` / ``release`` / ``revoke`` (with ``Lease``). Eval runs:
``claim_run`` / ``take_run`` / ``fence_run`` / ``heartbeat_run`` / ``revoke_run`` (with
``RunLease``); gate runs (``job_id`` set) are run by the job's own worker and never claimed here.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from sqlalchemy import and_, func, not_, or_, select, update
from sqlalchemy.orm import Session

from afinar.domain.evals import IN_PROGRESS, QUEUED
from afinar.domain.hardware import NF4
from afinar.domain.jobs import JobStatus
from afinar.errors import LeaseLost
from afinar.store.db import Database, session_now
from afinar.store.tables import EvalRun, Job, Organization, WebhookDelivery

_Row = TypeVar("_Row", Job, EvalRun, WebhookDelivery)


class _Leased(Generic[_Row]):
    """The lease columns of one table: compare-and-set claim, fence, release, take and revoke."""

    def __init__(self, model: type[_Row], noun: str) -> None:
        self.model: type[_Row] = model
        self.noun = noun  # "" for jobs, "eval run " for runs: the LeaseLost message

    def free(self, now: float) -> tuple[Any, Any]:
        """(expired, free): the lease ran out (or there is none); nobody holds a live lease."""
        m = self.model
        expired = or_(m.lease_expires_at.is_(None), m.lease_expires_at < now)
        return expired, or_(m.lease_owner.is_(None), expired)

    def claim_first(
        self,
        db: Database,
        candidates: list[tuple[str, int]],
        owner: str,
        now: float,
        lease_seconds: float,
        *,
        guard: Any = None,
        values: dict[str, Any] | None = None,
        confirm: Callable[[Session, str], bool] | None = None,
    ) -> tuple[str, int] | None:
        """Claim the first of ``candidates`` (id, token) still at its token (and matching ``guard``),
        each in its own transaction; ``confirm`` may veto a claim after it (rolled back). Returns
        (id, new token) or None."""
        m = self.model
        for row_id, token in candidates:
            stmt = update(m).where(m.id == row_id, m.lease_token == token)
            if guard is not None:
                stmt = stmt.where(guard)
            stmt = stmt.values(
                lease_owner=owner,
                lease_token=token + 1,
                lease_expires_at=now + lease_seconds,
                **(values or {}),
            )
            try:
                with db.session() as s:
                    if s.execute(stmt).rowcount != 1:  # type: ignore[attr-defined]
                        continue
                    if confirm is not None and not confirm(s, row_id):
                        raise _Vetoed
                    return row_id, token + 1
            except _Vetoed:
                continue
        return None

    def fence(self, s: Session, row_id: str, token: int, owner: str, lease_seconds: float | None) -> _Row:
        """Inside a transaction: prove the lease still holds (extending it), and return the row."""
        m = self.model
        values: dict[str, object] = {"lease_owner": owner}
        if lease_seconds is not None:
            values["lease_expires_at"] = session_now(s) + lease_seconds
        res = s.execute(update(m).where(m.id == row_id, m.lease_token == token).values(**values))
        if res.rowcount != 1:  # type: ignore[attr-defined]
            raise LeaseLost(f"lease on {self.noun}{row_id} was lost")
        row = s.scalar(select(m).where(m.id == row_id).execution_options(populate_existing=True))
        assert row is not None
        return row

    def release(self, s: Session, row_id: str, token: int, owner: str) -> None:
        """Let the row go, fenced; bumping the token also fences the holder's own late heartbeats out."""
        self.fence(s, row_id, token, owner, None)
        m = self.model
        bumped = {"lease_owner": None, "lease_expires_at": None, "lease_token": token + 1}
        s.execute(update(m).where(m.id == row_id).values(**bumped))

    @staticmethod
    def take(s: Session, row: _Row, owner: str, lease_seconds: float) -> int:
        """Lease a row the caller holds in its own transaction (no race: it just created it)."""
        row.lease_token = (row.lease_token or 0) + 1
        row.lease_owner = owner
        row.lease_expires_at = session_now(s) + lease_seconds
        return row.lease_token

    @staticmethod
    def revoke(row: _Row) -> None:
        """Take the lease away from whoever holds it (cancellation): its next write fails.

        The token is incremented by the database when the row is written, not from the value this
        session read: a worker may have claimed the row (token + 1) since, and a token computed
        from the stale read would hand that worker's lease back to it."""
        row.lease_token = type(row).lease_token + 1
        row.lease_owner = None
        row.lease_expires_at = None


class _Vetoed(Exception):
    """A claim was taken back after the compare-and-set (e.g. the organisation reached its limit)."""


_JOBS = _Leased(Job, "")
_RUNS = _Leased(EvalRun, "eval run ")
DELIVERIES = _Leased(WebhookDelivery, "webhook delivery ")  # queue/webhooks.py


# --- fine-tuning jobs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lease:
    job_id: str
    token: int
    owner: str


Lane = Literal["any", "validate", "train"]
LANES: tuple[Lane, ...] = ("any", "validate", "train")

# The statuses whose leased jobs count against ``max_per_org``, per lane. Validation is short and
# never waits behind its organisation's training, and does not count against the training limit.
_COUNTED: dict[Lane, tuple[JobStatus, ...]] = {
    "any": (JobStatus.VALIDATING_FILES, JobStatus.QUEUED, JobStatus.RUNNING),
    "train": (JobStatus.QUEUED, JobStatus.RUNNING),
    "validate": (),
}


def _holding(now: float, statuses: tuple[JobStatus, ...]) -> Any:
    """Jobs in ``statuses`` whose worker holds a live lease (validating, or claimed for training)."""
    return and_(
        Job.status.in_(list(statuses)),
        Job.lease_owner.is_not(None),
        Job.lease_expires_at >= now,
    )


def _trainable(now: float) -> Any:
    """A free ``queued`` job, or a ``running`` one whose worker died (lease expired: recovery)."""
    expired, free = _JOBS.free(now)
    return or_(and_(Job.status == JobStatus.QUEUED, free), and_(Job.status == JobStatus.RUNNING, expired))


def _excluded(exclude_models: Collection[str], exclude_unquantized: Collection[str]) -> Any | None:
    """The jobs a worker cannot train: any job on ``exclude_models``, and a job on
    ``exclude_unquantized`` unless it is QLoRA (``quantization = 'nf4'``). None: it trains all."""
    terms: list[Any] = []
    if exclude_models:
        terms.append(Job.model.in_(sorted(exclude_models)))
    if exclude_unquantized:
        not_nf4 = or_(Job.quantization.is_(None), Job.quantization != NF4)
        terms.append(and_(Job.model.in_(sorted(exclude_unquantized)), not_nf4))
    return or_(*terms) if terms else None


def _claimable(
    now: float,
    lane: Lane,
    exclude_models: Collection[str] = (),
    exclude_unquantized: Collection[str] = (),
) -> Any:
    """What ``lane`` may take: a free (or abandoned) job waiting for it, or a training job whose
    worker died (running, lease expired: crash recovery); training jobs this worker's devices
    cannot train (``_excluded``) are left to other workers."""
    _, free = _JOBS.free(now)
    validating = and_(Job.status == JobStatus.VALIDATING_FILES, free)
    trainable = _trainable(now)
    excluded = _excluded(exclude_models, exclude_unquantized)
    if excluded is not None:
        trainable = and_(trainable, not_(excluded))
    if lane == "validate":
        return validating
    if lane == "train":
        return trainable
    return or_(validating, trainable)


def claim(
    db: Database,
    owner: str,
    lease_seconds: float,
    *,
    max_per_org: int = 0,
    lane: Lane = "any",
    exclude_models: Collection[str] = (),
    exclude_unquantized: Collection[str] = (),
) -> Lease | None:
    """Take the oldest claimable job, or None. Safe against concurrent claimers (compare-and-set).

    ``lane`` says which jobs (docs/architecture.md, "Worker lanes"): ``"validate"`` takes only
    jobs in ``validating_files``; ``"train"`` only jobs ready to train (``queued``, or ``running``
    with an expired lease: crash recovery); ``"any"`` both, oldest first.

    With ``max_per_org`` > 0, jobs of an organisation that already has that many leased jobs are
    skipped (they stay queued until one ends); the count is checked again after the claim, under a
    lock on the organisation's row, so racing workers cannot exceed it. The ``"train"`` lane
    counts only jobs leased for training; the ``"validate"`` lane has no limit (validation is
    short work and never waits behind the organisation's own training); ``"any"`` counts both.

    ``exclude_models``: base models whose jobs this worker cannot train (its devices do not meet
    their catalogue requirement in any mode; services/workers.py). ``exclude_unquantized``: bases
    it can train only in QLoRA (its GPU meets the entry's ``min_gpu_memory_gb_nf4``, not its
    ``min_gpu_memory_gb``): their jobs are claimed only with ``quantization = 'nf4'``. Excluded
    jobs are never claimed for training here, and stay queued for a worker that can (``stranded``
    finds them). A claim clears the job's ``waiting_for`` mark.
    """
    if lane not in LANES:
        raise ValueError(f"unknown lane {lane!r}")
    now = db.now()
    counted = _COUNTED[lane] if max_per_org > 0 else ()
    stmt = select(Job.id, Job.lease_token, Job.org_id).where(
        _claimable(now, lane, exclude_models, exclude_unquantized)
    )
    if counted:
        busy = select(Job.org_id).where(_holding(now, counted)).group_by(Job.org_id)
        stmt = stmt.where(Job.org_id.not_in(busy.having(func.count() >= max_per_org)))
    with db.session() as s:
        candidates = list(s.execute(stmt.order_by(Job.seq).limit(5)))
    org_of = {job_id: org_id for job_id, _, org_id in candidates}

    def within_limit(s: Session, job_id: str) -> bool:
        org_id = org_of[job_id]
        s.execute(select(Organization.id).where(Organization.id == org_id).with_for_update())
        held = s.scalar(select(func.count()).where(Job.org_id == org_id, _holding(now, counted)))
        return (held or 0) <= max_per_org

    got = _JOBS.claim_first(
        db,
        [(job_id, token) for job_id, token, _ in candidates],
        owner,
        now,
        lease_seconds,
        values={"attempts": Job.attempts + 1, "waiting_for": None},
        confirm=within_limit if counted else None,
    )
    return Lease(job_id=got[0], token=got[1], owner=owner) if got else None


def stranded(
    db: Database,
    models: Collection[str],
    *,
    unquantized: Collection[str] = (),
    limit: int = 5,
) -> list[tuple[str, str, str | None]]:
    """(job id, model, quantization) of the oldest trainable jobs not yet marked ``waiting_for``
    that a worker claiming with ``exclude_models=models, exclude_unquantized=unquantized`` skips,
    for services/workers.py to explain."""
    excluded = _excluded(models, unquantized)
    if excluded is None:
        return []
    stmt = (
        select(Job.id, Job.model, Job.quantization)
        .where(_trainable(db.now()), excluded, Job.waiting_for.is_(None))
        .order_by(Job.seq)
        .limit(limit)
    )
    with db.session() as s:
        return [(job_id, model, quantization) for job_id, model, quantization in s.execute(stmt)]


def fence(s: Session, lease: Lease, lease_seconds: float | None = None) -> Job:
    """Inside a transaction: prove we still hold the lease (extending it), and return the row."""
    return _JOBS.fence(s, lease.job_id, lease.token, lease.owner, lease_seconds)


def heartbeat(db: Database, lease: Lease, lease_seconds: float) -> str:
    """Extend the lease; return the job's status (the API may have paused it)."""
    with db.session() as s:
        return fence(s, lease, lease_seconds).status


def release(s: Session, lease: Lease) -> None:
    """Let the job go (paused, or finished). Fenced like every other write."""
    _JOBS.release(s, lease.job_id, lease.token, lease.owner)


def revoke(s: Session, job: Job) -> None:
    """Take the lease away from whoever holds it (cancellation): its next write fails."""
    _JOBS.revoke(job)


# --- standalone eval runs --------------------------------------------------------------------------


@dataclass(frozen=True)
class RunLease:
    run_id: str
    token: int
    owner: str


def claim_run(db: Database, owner: str, lease_seconds: float) -> RunLease | None:
    """Take the oldest queued (or abandoned) standalone eval run, or None; compare-and-set on the token."""
    now = db.now()
    _, free = _RUNS.free(now)
    claimable = and_(EvalRun.job_id.is_(None), EvalRun.status.in_([QUEUED, IN_PROGRESS]), free)
    with db.session() as s:
        stmt = select(EvalRun.id, EvalRun.lease_token).where(claimable).order_by(EvalRun.seq).limit(5)
        candidates = [(run_id, token) for run_id, token in s.execute(stmt)]
    got = _RUNS.claim_first(db, candidates, owner, now, lease_seconds, guard=claimable)
    return RunLease(got[0], got[1], owner) if got else None


def take_run(s: Session, run: EvalRun, owner: str, lease_seconds: float) -> RunLease:
    """Lease a run the caller created itself (gate runs), inside the caller's transaction."""
    return RunLease(run.id, _RUNS.take(s, run, owner, lease_seconds), owner)


def fence_run(s: Session, lease: RunLease, lease_seconds: float | None = None) -> EvalRun:
    """Inside a transaction: prove the run's lease still holds (extending it) and return the run."""
    return _RUNS.fence(s, lease.run_id, lease.token, lease.owner, lease_seconds)


def heartbeat_run(db: Database, lease: RunLease, lease_seconds: float) -> str:
    """Extend the run's lease; return its status."""
    with db.session() as s:
        return fence_run(s, lease, lease_seconds).status


def revoke_run(run: EvalRun) -> None:
    """Take the run away from the worker running it (cancel, delete): its next fenced write fails."""
    _RUNS.revoke(run)

"""A database-backed job queue: claim with a lease, heartbeat, fenced writes, release.

A claim increments ``lease_token``. Every later write of that worker names the token it got; when
someone else has claimed the job since (the lease expired, or the job was cancelled, which also
bumps the token), the write finds no row and raises ``LeaseLost`` instead of committing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from afinar.domain.jobs import JobStatus
from afinar.errors import LeaseLost
from afinar.store.db import Database, session_now
from afinar.store.tables import Job, Organization


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


def _claimable(now: float, lane: Lane) -> Any:
    """What ``lane`` may take: a free (or abandoned) job waiting for it, or a training job whose
    worker died (running, lease expired: crash recovery)."""
    expired = or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now)
    free = or_(Job.lease_owner.is_(None), expired)
    validating = and_(Job.status == JobStatus.VALIDATING_FILES, free)
    queued = and_(Job.status == JobStatus.QUEUED, free)
    trainable = or_(queued, and_(Job.status == JobStatus.RUNNING, expired))
    if lane == "validate":
        return validating
    if lane == "train":
        return trainable
    return or_(validating, trainable)


class _OrgBusy(Exception):
    """The organisation reached its limit of jobs at once between choosing a job and claiming it."""


def claim(
    db: Database, owner: str, lease_seconds: float, *, max_per_org: int = 0, lane: Lane = "any"
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
    """
    if lane not in LANES:
        raise ValueError(f"unknown lane {lane!r}")
    now = db.now()
    counted = _COUNTED[lane] if max_per_org > 0 else ()
    stmt = select(Job.id, Job.lease_token, Job.org_id).where(_claimable(now, lane))
    if counted:
        busy = select(Job.org_id).where(_holding(now, counted)).group_by(Job.org_id)
        stmt = stmt.where(Job.org_id.not_in(busy.having(func.count() >= max_per_org)))
    with db.session() as s:
        candidates = list(s.execute(stmt.order_by(Job.seq).limit(5)))
    for job_id, token, org_id in candidates:
        try:
            with db.session() as s:
                res = s.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.lease_token == token)
                    .values(
                        lease_owner=owner,
                        lease_token=token + 1,
                        lease_expires_at=now + lease_seconds,
                        attempts=Job.attempts + 1,
                    )
                )
                if res.rowcount != 1:  # type: ignore[attr-defined]
                    continue
                if counted:
                    s.execute(select(Organization.id).where(Organization.id == org_id).with_for_update())
                    held = s.scalar(select(func.count()).where(Job.org_id == org_id, _holding(now, counted)))
                    if (held or 0) > max_per_org:
                        raise _OrgBusy
                return Lease(job_id=job_id, token=token + 1, owner=owner)
        except _OrgBusy:
            continue
    return None


def fence(s: Session, lease: Lease, lease_seconds: float | None = None) -> Job:
    """Inside a transaction: prove we still hold the lease (extending it), and return the row."""
    values: dict[str, object] = {"lease_owner": lease.owner}
    if lease_seconds is not None:
        values["lease_expires_at"] = session_now(s) + lease_seconds
    res = s.execute(
        update(Job).where(Job.id == lease.job_id, Job.lease_token == lease.token).values(**values)
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        raise LeaseLost(f"lease on {lease.job_id} was lost")
    job = s.scalar(select(Job).where(Job.id == lease.job_id).execution_options(populate_existing=True))
    assert job is not None
    return job


def heartbeat(db: Database, lease: Lease, lease_seconds: float) -> str:
    """Extend the lease; return the job's status (the API may have paused it)."""
    with db.session() as s:
        return fence(s, lease, lease_seconds).status


def release(s: Session, lease: Lease) -> None:
    """Let the job go (paused, or finished). Fenced like every other write."""
    fence(s, lease)
    # Bumping the token also fences this holder's own late heartbeats out.
    s.execute(
        update(Job)
        .where(Job.id == lease.job_id)
        .values(lease_owner=None, lease_expires_at=None, lease_token=lease.token + 1)
    )


def revoke(s: Session, job: Job) -> None:
    """Take the lease away from whoever holds it (cancellation): its next write fails."""
    job.lease_token = job.lease_token + 1
    job.lease_owner = None
    job.lease_expires_at = None

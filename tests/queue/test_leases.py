"""The job queue on a real database: claims, leases, fencing, recovery, cancellation."""

from __future__ import annotations

import threading
import time

import pytest

from afinar.domain.jobs import JobStatus
from afinar.errors import LeaseLost
from afinar.queue.leases import claim, fence, heartbeat, release, revoke
from afinar.services.orgs import create_org
from afinar.store import jobs as repo
from tests.support.queue import add_job


@pytest.fixture
def org(db) -> str:  # type: ignore[no-untyped-def]
    return create_org(db, "acme")[0].id


def test_migration_is_idempotent(db) -> None:  # type: ignore[no-untyped-def]
    db.migrate()


def test_claim_takes_oldest_once(db, org: str) -> None:  # type: ignore[no-untyped-def]
    first, second = add_job(db, org), add_job(db, org)
    a = claim(db, "w1", 30)
    b = claim(db, "w2", 30)
    assert a is not None and b is not None
    assert (a.job_id, b.job_id) == (first, second)
    assert claim(db, "w3", 30) is None


def test_concurrent_claimers_never_share_a_job(db, org: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(6):
        add_job(db, org)
    got: list[str] = []
    lock = threading.Lock()

    def grab(name: str) -> None:
        while (lease := claim(db, name, 30)) is not None:
            with lock:
                got.append(lease.job_id)

    threads = [threading.Thread(target=grab, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 6 and len(set(got)) == 6


def test_expired_running_job_is_recovered_and_old_holder_is_fenced(db, org: str) -> None:  # type: ignore[no-untyped-def]
    job_id = add_job(db, org)
    old = claim(db, "dead-worker", lease_seconds=0.2)
    assert old is not None
    with db.session() as s:
        fence(s, old).status = JobStatus.RUNNING
    assert claim(db, "w2", 30) is None  # lease still valid
    time.sleep(0.3)
    new = claim(db, "w2", 30)
    assert new is not None and new.job_id == job_id and new.token == old.token + 1
    with pytest.raises(LeaseLost), db.session() as s:
        fence(s, old).status = JobStatus.FAILED
    with db.session() as s:
        assert repo.get_any(s, job_id).status == JobStatus.RUNNING  # type: ignore[union-attr]


def test_cancel_revokes_the_lease(db, org: str) -> None:  # type: ignore[no-untyped-def]
    job_id = add_job(db, org)
    lease = claim(db, "w1", 30)
    assert lease is not None
    assert heartbeat(db, lease, 30) == JobStatus.VALIDATING_FILES
    with db.session() as s:
        job = repo.get_any(s, job_id)
        assert job is not None
        job.status = JobStatus.CANCELLED
        revoke(s, job)
    with pytest.raises(LeaseLost):
        heartbeat(db, lease, 30)
    assert claim(db, "w2", 30) is None  # cancelled jobs are never claimed


def test_a_cancel_that_read_before_a_claim_still_fences_the_claimer(db, org: str) -> None:  # type: ignore[no-untyped-def]
    """The cancel reads the job, a worker claims it (token + 1) before the cancel writes: the
    worker's lease must still be lost, or it would publish a cancelled job as succeeded."""
    add_job(db, org)
    with db.session() as s:
        job = repo.get_any(s, add_job(db, org))
        assert job is not None
        other = claim(db, "w0", 30)  # the first job: this one is still free
        assert other is not None
        lease = claim(db, "w1", 30)  # claims the job the cancel has read, after the read
        assert lease is not None and lease.job_id == job.id
        job.status = JobStatus.CANCELLED
        revoke(s, job)
    with pytest.raises(LeaseLost):
        heartbeat(db, lease, 30)


def test_released_paused_job_waits_until_resumed(db, org: str) -> None:  # type: ignore[no-untyped-def]
    job_id = add_job(db, org, JobStatus.RUNNING)
    lease = claim(db, "w1", 0.1)
    assert lease is not None
    with db.session() as s:
        fence(s, lease).status = JobStatus.PAUSED
        release(s, lease)
    time.sleep(0.2)
    assert claim(db, "w2", 30) is None
    with db.session() as s:
        job = repo.get_any(s, job_id)
        assert job is not None
        job.status = JobStatus.QUEUED
    again = claim(db, "w2", 30)
    assert again is not None and again.job_id == job_id


def test_events_are_newest_first_and_paginate(db, org: str) -> None:  # type: ignore[no-untyped-def]
    job_id = add_job(db, org)
    with db.session() as s:
        job = repo.get_any(s, job_id)
        assert job is not None
        for i in range(5):
            repo.add_event(s, job, f"event {i}")
    with db.session() as s:
        page = repo.events_page(s, job_id, after=None, limit=3)
        assert [e.message for e in page.items] == ["event 4", "event 3", "event 2"] and page.has_more
        rest = repo.events_page(s, job_id, after=page.items[-1].id, limit=3)
        assert [e.message for e in rest.items] == ["event 1", "event 0"] and not rest.has_more

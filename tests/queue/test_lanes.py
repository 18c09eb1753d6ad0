"""Claiming by lane (docs/architecture.md, "Worker lanes"): validation and training never take
each other's jobs, and only training counts against an organisation's limit of jobs at once."""

from __future__ import annotations

import pytest

from afinar.clock import FixedClock
from afinar.domain.jobs import JobStatus
from afinar.queue.leases import claim, fence, release
from afinar.services.orgs import create_org
from tests.support.queue import add_job


@pytest.fixture
def orgs(db) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    return create_org(db, "acme")[0].id, create_org(db, "globex")[0].id


def test_each_lane_takes_only_its_own_jobs(db, orgs: tuple[str, str]) -> None:  # type: ignore[no-untyped-def]
    org, _ = orgs
    queued = add_job(db, org, JobStatus.QUEUED)
    validating = add_job(db, org)
    assert claim(db, "w", 30, lane="validate").job_id == validating  # type: ignore[union-attr]
    assert claim(db, "w", 30, lane="validate") is None
    assert claim(db, "w", 30, lane="train").job_id == queued  # type: ignore[union-attr]
    assert claim(db, "w", 30, lane="train") is None
    with pytest.raises(ValueError):
        claim(db, "w", 30, lane="nope")  # type: ignore[arg-type]


def test_a_validated_job_released_as_queued_goes_to_the_training_lane(db, orgs: tuple[str, str]) -> None:  # type: ignore[no-untyped-def]
    org, _ = orgs
    job_id = add_job(db, org)
    lease = claim(db, "short", 30, lane="validate")
    assert lease is not None
    with db.session() as s:
        fence(s, lease).status = JobStatus.QUEUED
        release(s, lease)
    assert claim(db, "short", 30, lane="validate") is None
    again = claim(db, "train", 30, lane="train")
    assert again is not None and again.job_id == job_id and again.token > lease.token


def test_the_training_lane_recovers_a_running_job_whose_worker_died(db, orgs: tuple[str, str]) -> None:  # type: ignore[no-untyped-def]
    org, _ = orgs
    job_id = add_job(db, org, JobStatus.QUEUED)
    db.clock = clock = FixedClock(1_000_000.0)  # leases expire by the database's clock
    dead = claim(db, "dead", 30, lane="train")
    assert dead is not None
    with db.session() as s:
        fence(s, dead).status = JobStatus.RUNNING
    assert claim(db, "w", 30, lane="train") is None  # its lease still holds
    clock.advance(31)
    assert claim(db, "w", 30, lane="validate") is None  # never the short lane's
    recovered = claim(db, "w", 30, lane="train")
    assert recovered is not None and recovered.job_id == job_id


def test_only_training_counts_against_the_organisations_limit(db, orgs: tuple[str, str]) -> None:  # type: ignore[no-untyped-def]
    acme, globex = orgs
    add_job(db, acme, JobStatus.QUEUED)
    waiting = add_job(db, acme, JobStatus.QUEUED)
    new = add_job(db, acme)
    other = add_job(db, globex, JobStatus.QUEUED)
    training = claim(db, "t1", 30, max_per_org=1, lane="train")
    assert training is not None
    # acme trains one job, its limit: its next queued job waits, another organisation's does not...
    assert claim(db, "t2", 30, max_per_org=1, lane="train").job_id == other  # type: ignore[union-attr]
    assert claim(db, "t3", 30, max_per_org=1, lane="train") is None
    # ...and its new job is validated at once, without waiting behind its own training.
    assert claim(db, "s1", 30, max_per_org=1, lane="validate").job_id == new  # type: ignore[union-attr]
    with db.session() as s:
        fence(s, training).status = JobStatus.FAILED
        release(s, training)
    assert claim(db, "t3", 30, max_per_org=1, lane="train").job_id == waiting  # type: ignore[union-attr]


def test_a_job_being_validated_does_not_hold_a_training_slot(db, orgs: tuple[str, str]) -> None:  # type: ignore[no-untyped-def]
    acme, _ = orgs
    add_job(db, acme)
    queued = add_job(db, acme, JobStatus.QUEUED)
    assert claim(db, "s1", 30, max_per_org=1, lane="validate") is not None
    lease = claim(db, "t1", 30, max_per_org=1, lane="train")
    assert lease is not None and lease.job_id == queued

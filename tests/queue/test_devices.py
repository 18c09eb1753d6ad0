"""Claims by device (docs/architecture.md, "Devices"): a worker claims for training only jobs whose
base model its devices meet; a job no live worker can run stays queued and says why, once."""

from __future__ import annotations

import pytest

from afinar.catalog.entry import BaseModelEntry
from afinar.catalog.registry import Catalog
from afinar.clock import FixedClock
from afinar.domain.hardware import GIB, Devices, Gpu
from afinar.domain.jobs import JobStatus
from afinar.queue.leases import claim, fence, release
from afinar.services.orgs import create_org
from afinar.services.workers import WAITING_EVENT, WorkersService
from afinar.store import jobs as repo
from tests.support.queue import add_job

CATALOG = Catalog(
    [
        BaseModelEntry(id="m", source="local", path="/m"),  # the default: runs anywhere
        BaseModelEntry(id="big", source="local", path="/big", min_gpu_memory_gb=40),
    ]
)
CPU = Devices(kind="cpu", cpu_cores=4, memory_bytes=16 * GIB)
SMALL_GPU = Devices(kind="cuda", gpus=(Gpu("NVIDIA A10G", 24 * GIB),), cpu_cores=8)
BIG_GPU = Devices(kind="cuda", gpus=(Gpu("NVIDIA H200", 141 * GIB),), cpu_cores=16)
LANES = {"training": 1, "short": 2}


@pytest.fixture
def org(db) -> str:  # type: ignore[no-untyped-def]
    return create_org(db, "acme")[0].id


def add_big_job(db, org: str, status: str = JobStatus.QUEUED) -> str:  # type: ignore[no-untyped-def]
    job_id = add_job(db, org, status)
    with db.session() as s:
        row = repo.get_any(s, job_id)
        assert row is not None
        row.model = "big"
    return job_id


def waiting_events(db, job_id: str) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    with db.session() as s:
        events = repo.events_page(s, job_id, after=None, limit=100).items
    return [(e.level, e.message) for e in events if e.type == WAITING_EVENT]


def test_requirements_come_from_the_catalogue() -> None:
    workers = WorkersService(db=None, catalog=CATALOG, lease_seconds=30)  # type: ignore[arg-type]
    assert workers.unable_models(CPU) == ["big"]
    assert workers.unable_models(SMALL_GPU) == ["big"]  # 24 GiB < 40 GiB
    assert workers.unable_models(BIG_GPU) == []
    assert workers.requirement("big").describe() == "a GPU with at least 40 GiB"
    assert workers.requirement("m").anywhere and workers.requirement("unknown").anywhere
    assert BaseModelEntry(id="g", source="local", requires_gpu=True).requirement().met_by(SMALL_GPU)
    assert not BaseModelEntry(id="g", source="local", requires_gpu=True).requirement().met_by(CPU)


def test_a_cpu_worker_leaves_a_gpu_job_queued_and_it_says_why_once(db, org: str) -> None:  # type: ignore[no-untyped-def]
    db.clock = FixedClock(1_000_000.0)
    workers = WorkersService(db=db, catalog=CATALOG, lease_seconds=30)
    workers.register("cpu-box", host="a", lanes=LANES, devices=CPU)
    big = add_big_job(db, org)
    normal = add_job(db, org, JobStatus.QUEUED)
    unable = workers.unable_models(CPU)

    lease = claim(db, "cpu-box/train-0", 30, lane="train", exclude_models=unable)
    assert lease is not None and lease.job_id == normal  # the older GPU job is skipped, not failed
    assert claim(db, "cpu-box/train-0", 30, lane="train", exclude_models=unable) is None

    assert workers.note_waiting(unable) == [big]
    assert workers.note_waiting(unable) == []  # every later poll: no second event
    [(level, message)] = waiting_events(db, big)
    assert level == "warn"
    assert "needs a GPU with at least 40 GiB" in message and "live workers: 1 cpu" in message
    with db.session() as s:
        row = repo.get_any(s, big)
        assert row is not None and row.status == JobStatus.QUEUED and row.attempts == 0

    # A capable worker appears: it claims the job at once, and the mark is cleared.
    workers.register("gpu-box", host="b", lanes=LANES, devices=BIG_GPU)
    got = claim(db, "gpu-box/train-0", 30, lane="train", exclude_models=workers.unable_models(BIG_GPU))
    assert got is not None and got.job_id == big
    with db.session() as s:
        assert fence(s, got).waiting_for is None
    held = {w.name: w.jobs_held for w in workers.states()}
    assert held == {"cpu-box": 1, "gpu-box": 1}


def test_no_event_while_a_live_worker_can_run_it_and_stale_workers_do_not_count(db, org: str) -> None:  # type: ignore[no-untyped-def]
    db.clock = clock = FixedClock(1_000_000.0)
    workers = WorkersService(db=db, catalog=CATALOG, lease_seconds=30)
    workers.register("cpu-box", host="a", lanes=LANES, devices=CPU)
    workers.register("small", host="b", lanes=LANES, devices=SMALL_GPU)
    workers.register("gpu-box", host="c", lanes=LANES, devices=BIG_GPU)
    workers.register("gpu-validator", host="d", lanes={"training": 0, "short": 2}, devices=BIG_GPU)
    big = add_big_job(db, org)
    unable = workers.unable_models(CPU)
    assert workers.note_waiting(unable) == []  # gpu-box is live: it is only busy
    assert waiting_events(db, big) == []

    clock.advance(91)  # beyond 3 lease periods: every row is stale now...
    workers.heartbeat("cpu-box")
    workers.heartbeat("small")
    workers.heartbeat("gpu-validator")  # ...but these three; the validator has no training lane
    assert {w.name for w in workers.states() if w.live} == {"cpu-box", "small", "gpu-validator"}
    assert workers.note_waiting(unable) == [big]
    [(_, message)] = waiting_events(db, big)
    assert "live workers: 1 cpu, 1 with 1× NVIDIA A10G (24 GiB)" in message


def test_exclusions_leave_validation_and_recovery_to_the_right_workers(db, org: str) -> None:  # type: ignore[no-untyped-def]
    db.clock = clock = FixedClock(1_000_000.0)
    validating = add_big_job(db, org, JobStatus.VALIDATING_FILES)
    # Validation is short work: any worker validates a job whatever its base needs.
    lease = claim(db, "cpu/short-0", 30, lane="validate")
    assert lease is not None and lease.job_id == validating
    with db.session() as s:
        fence(s, lease).status = JobStatus.QUEUED
        release(s, lease)
    assert claim(db, "cpu/train-0", 30, lane="train", exclude_models=["big"]) is None
    assert claim(db, "cpu/any", 30, exclude_models=["big"]) is None
    # A GPU worker trains it, dies; its recovery is a GPU worker's too.
    dead = claim(db, "gpu/train-0", 30, lane="train")
    assert dead is not None
    with db.session() as s:
        fence(s, dead).status = JobStatus.RUNNING
    clock.advance(31)
    assert claim(db, "cpu/train-0", 30, lane="train", exclude_models=["big"]) is None
    again = claim(db, "gpu2/train-0", 30, lane="train", exclude_models=[])
    assert again is not None and again.job_id == validating

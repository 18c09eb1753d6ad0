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


def add_big_job(
    db, org: str, status: str = JobStatus.QUEUED, *, model: str = "big", quantization: str | None = None
) -> str:  # type: ignore[no-untyped-def]
    job_id = add_job(db, org, status)
    with db.session() as s:
        row = repo.get_any(s, job_id)
        assert row is not None
        row.model = model
        row.quantization = quantization
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


# --- QLoRA: a job's quantisation lowers what it needs (catalogue ``min_gpu_memory_gb_nf4``) ---------

QLORA_CATALOG = Catalog(
    [
        BaseModelEntry(id="m", source="local", path="/m"),
        BaseModelEntry(id="big", source="local", path="/big", min_gpu_memory_gb=40),  # no nf4 field
        BaseModelEntry(id="q", source="local", path="/q", min_gpu_memory_gb=40, min_gpu_memory_gb_nf4=12),
    ]
)
GPU_16 = Devices(kind="cuda", gpus=(Gpu("NVIDIA T4", 16 * GIB),), cpu_cores=8)
GPU_8 = Devices(kind="cuda", gpus=(Gpu("NVIDIA T4", 8 * GIB),), cpu_cores=8)


def test_the_nf4_requirement_comes_from_its_own_field_else_the_bf16_one() -> None:
    q = QLORA_CATALOG.get("q")
    big = QLORA_CATALOG.get("big")
    assert q is not None and big is not None
    assert q.requirement().describe() == "a GPU with at least 40 GiB"
    assert q.requirement("nf4").describe() == "a GPU with at least 12 GiB"
    assert q.requirement("none") == q.requirement()
    assert big.requirement("nf4") == big.requirement()  # absent: an nf4 job needs what bf16 does
    workers = WorkersService(db=None, catalog=QLORA_CATALOG, lease_seconds=30)  # type: ignore[arg-type]
    assert (workers.unable_models(GPU_16), workers.nf4_only_models(GPU_16)) == (["big"], ["q"])
    assert (workers.unable_models(GPU_8), workers.nf4_only_models(GPU_8)) == (["big", "q"], [])
    assert (workers.unable_models(BIG_GPU), workers.nf4_only_models(BIG_GPU)) == ([], [])
    assert (workers.unable_models(CPU), workers.nf4_only_models(CPU)) == (["big", "q"], [])
    with pytest.raises(ValueError, match="min_gpu_memory_gb_nf4"):  # QLoRA never needs more than bf16
        BaseModelEntry(id="x", source="local", min_gpu_memory_gb=10, min_gpu_memory_gb_nf4=12)


def test_a_16_gib_worker_claims_a_qlora_job_on_a_40_gib_base_but_not_its_bf16_job(db, org: str) -> None:  # type: ignore[no-untyped-def]
    db.clock = FixedClock(1_000_000.0)
    workers = WorkersService(db=db, catalog=QLORA_CATALOG, lease_seconds=30)
    workers.register("t4", host="a", lanes=LANES, devices=GPU_16)
    bf16_q = add_big_job(db, org, model="q")
    nf4_big = add_big_job(db, org, model="big", quantization="nf4")  # no nf4 field: needs 40 GiB
    nf4_q = add_big_job(db, org, model="q", quantization="nf4")
    unable, nf4_only = workers.unable_models(GPU_16), workers.nf4_only_models(GPU_16)

    def take() -> str | None:
        lease = claim(db, "t4/train-0", 30, lane="train", exclude_models=unable, exclude_unquantized=nf4_only)
        return lease.job_id if lease is not None else None

    assert take() == nf4_q  # the two older jobs are skipped, not failed
    assert take() is None
    # Without the exclusion by mode, the same worker would have taken the bf16 job first.
    assert claim(db, "other", 30, lane="train", exclude_models=unable) is not None

    assert workers.note_waiting(unable, nf4_only) == [nf4_big]  # bf16_q is claimed by "other" now
    [(level, message)] = waiting_events(db, nf4_big)
    assert level == "warn"
    assert "base model big needs a GPU with at least 40 GiB for QLoRA (nf4);" in message
    assert "live workers: 1 with 1× NVIDIA T4 (16 GiB)" in message
    with db.session() as s:
        row = repo.get_any(s, bf16_q)
        assert row is not None and row.lease_owner == "other"


def test_the_waiting_event_states_the_requirement_of_the_jobs_mode(db, org: str) -> None:  # type: ignore[no-untyped-def]
    db.clock = FixedClock(1_000_000.0)
    workers = WorkersService(db=db, catalog=QLORA_CATALOG, lease_seconds=30)
    workers.register("small", host="a", lanes=LANES, devices=GPU_8)
    bf16_q = add_big_job(db, org, model="q")
    nf4_q = add_big_job(db, org, model="q", quantization="nf4")
    unable, nf4_only = workers.unable_models(GPU_8), workers.nf4_only_models(GPU_8)
    assert (
        claim(db, "small/train-0", 30, lane="train", exclude_models=unable, exclude_unquantized=nf4_only)
        is None
    )
    assert workers.note_waiting(unable, nf4_only) == [bf16_q, nf4_q]
    [(_, bf16_message)] = waiting_events(db, bf16_q)
    [(_, nf4_message)] = waiting_events(db, nf4_q)
    assert "base model q needs a GPU with at least 12 GiB for QLoRA (nf4);" in nf4_message
    assert "base model q needs a GPU with at least 40 GiB (as QLoRA" in bf16_message
    assert '"quantization": "nf4", it needs a GPU with at least 12 GiB)' in bf16_message
    with db.session() as s:
        row = repo.get_any(s, nf4_q)
        assert row is not None and row.waiting_for == "a GPU with at least 12 GiB for QLoRA (nf4)"

    # A 16 GiB worker appears: it is live and can run the QLoRA job, not the bf16 one.
    workers.register("t4", host="b", lanes=LANES, devices=GPU_16)
    got = claim(
        db,
        "t4/train-0",
        30,
        lane="train",
        exclude_models=workers.unable_models(GPU_16),
        exclude_unquantized=workers.nf4_only_models(GPU_16),
    )
    assert got is not None and got.job_id == nf4_q
    with db.session() as s:
        assert fence(s, got).waiting_for is None

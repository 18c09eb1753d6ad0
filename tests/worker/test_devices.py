"""Workers know what they have (docs/architecture.md, "Devices"): the probe, the worker's row in the
``workers`` table, and a job whose base needs a GPU left queued by a CPU worker, with one event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from afinar.clock import FixedClock
from afinar.domain.jobs import JobStatus
from afinar.services.orgs import create_org
from afinar.services.workers import WAITING_EVENT
from afinar.store import jobs as repo
from afinar.training.hardware import probe
from afinar.worker.loop import Worker
from tests.support.queue import add_job
from tests.support.wait import wait_for

CUDA = torch.cuda.is_available()


def test_the_probe_reports_this_machine() -> None:
    cpu = probe("cpu")
    assert cpu.kind == "cpu" and cpu.gpus == () and cpu.cpu_cores >= 1 and cpu.memory_bytes > 0
    auto = probe("auto")
    assert auto.kind == ("cuda" if CUDA else "cpu")
    assert auto.gpu_count == (torch.cuda.device_count() if CUDA else 0)
    with pytest.raises(ValueError, match="AFINAR_WORKER_DEVICES"):
        probe("tpu")


@pytest.mark.skipif(CUDA, reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_an_error_not_a_silent_cpu_worker() -> None:
    with pytest.raises(RuntimeError, match="no CUDA device"):
        probe("cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_the_probe_reports_each_gpu_and_its_memory() -> None:
    devices = probe("cuda")
    assert devices.kind == "cuda" and devices.gpu_count == torch.cuda.device_count()
    for i, gpu in enumerate(devices.gpus):
        assert gpu.name == torch.cuda.get_device_name(i)
        assert gpu.memory_bytes == torch.cuda.get_device_properties(i).total_memory > 0
    assert devices.gpus[0].name in devices.summary()


@pytest.fixture
def gpu_catalog(tmp_path: Path, tiny_catalog: Path, tiny_model_dir: Path) -> Path:
    """The tiny catalogue plus a base that needs a 40 GiB GPU."""
    path = tmp_path / "catalog.toml"
    path.write_text(
        tiny_catalog.read_text()
        + f'\n[[models]]\nid = "big-base"\nsource = "local"\npath = "{tiny_model_dir}"\n'
        + "min_gpu_memory_gb = 40\n"
    )
    return path


@pytest.fixture
def cpu_container(settings: Any, gpu_catalog: Path) -> Any:
    from afinar.services.container import Container

    # AFINAR_WORKER_DEVICES=cpu: a CPU worker here and on a GPU machine alike.
    c = Container(settings.model_copy(update={"catalog_file": gpu_catalog, "worker_devices": "cpu"}))
    c.migrate()
    yield c
    c.close()


def test_a_cpu_worker_advertises_itself_and_leaves_a_gpu_job_queued(cpu_container: Any) -> None:
    c = cpu_container
    org = create_org(c.db, "acme")[0].id
    job_id = add_job(c.db, org, JobStatus.QUEUED)
    with c.db.session() as s:
        row = repo.get_any(s, job_id)
        assert row is not None
        row.model = "big-base"

    worker = Worker(c, name="box")
    assert worker.devices.kind == "cpu"  # GPUs hidden, if any
    assert worker.unable_models == ["big-base"]
    assert worker.train_once() is False
    assert worker.run_once() is False  # polled again: still nothing it can run, no second event

    [me] = c.workers.states()
    assert (me.name, me.live, me.jobs_held) == ("box", True, 0)
    assert me.devices.kind == "cpu" and me.lanes == {"training": 1, "short": 2}
    with c.db.session() as s:
        job = repo.get_any(s, job_id)
        assert job is not None and job.status == JobStatus.QUEUED and job.lease_owner is None
        events = [
            e for e in repo.events_page(s, job_id, after=None, limit=50).items if e.type == WAITING_EVENT
        ]
    [event] = events
    assert event.level == "warn"
    assert event.message == (
        "Waiting for a worker: base model big-base needs a GPU with at least 40 GiB; live workers: 1 cpu"
    )


def test_a_running_worker_heartbeats_its_row_and_removes_it_when_it_stops(cpu_container: Any) -> None:
    c = cpu_container
    c.clock = clock = FixedClock(1_000_000.0)
    worker = Worker(c, name="lanes")
    worker.start()
    try:
        first = wait_for(lambda: c.workers.states(), timeout=60)
        assert [w.name for w in first] == ["lanes"] and first[0].heartbeat_at == 1_000_000.0
        clock.advance(100)  # past heartbeat_seconds, and past 3 lease periods: stale until it beats
        wait_for(lambda: [w.heartbeat_at for w in c.workers.states()] == [1_000_100.0], timeout=60)
        assert c.workers.states()[0].live
    finally:
        worker.shutdown()
    assert c.workers.states() == []


def test_a_cpu_only_worker_keeps_its_training_children_on_the_cpu() -> None:
    from afinar.worker.runner import child_device

    assert child_device("auto", "cpu") == "cpu"  # the worker hid its GPUs: auto may not find them
    assert child_device("auto", "auto") == "auto"
    assert child_device("cuda", "cpu") == "cuda"  # an explicit choice is the operator's (and fails loudly)
    assert child_device("cpu", "cuda") == "cpu"

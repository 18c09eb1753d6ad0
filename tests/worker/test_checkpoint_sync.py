"""Checkpoints through the blob store: a worker with another data directory resumes from them,
and published artefacts are found from any node's paths (worker/checkpoint_sync.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from afinar.domain.jobs import JobStatus
from afinar.services.orgs import create_org
from afinar.worker.checkpoint_sync import CheckpointSync, resume_prefix, sweep_resume_state
from tests.support.queue import add_job

JOB = "ftjob-sync0000000000000000001"


def write_checkpoint(directory: Path, step: int) -> Path:
    directory.mkdir(parents=True)
    (directory / "adapter_model.safetensors").write_bytes(b"weights-%d" % step)
    (directory / "optimizer.pt").write_bytes(b"moments-%d" % step)
    (directory / "state.json").write_text(f'{{"step": {step}}}')
    return directory


def sync(container: Any, org_id: str, job_dir: Path) -> CheckpointSync:
    return CheckpointSync(
        artefacts=container.artefacts, blobs=container.blobs, org_id=org_id, job_id=JOB, job_dir=job_dir
    )


def test_another_worker_resumes_from_the_stored_checkpoint(container: Any, tmp_path: Path) -> None:
    org, _ = create_org(container.db, "sync")
    first = sync(container, org.id, tmp_path / "worker-1" / "jobs" / JOB)
    step2 = write_checkpoint(first.job_dir / "checkpoints" / "step-2", 2)
    step4 = write_checkpoint(first.job_dir / "checkpoints" / "step-4", 4)
    first.upload(step2, published=True)
    first.upload(step4, published=False)
    stored = container.blobs.keys(resume_prefix(org.id, JOB))
    assert stored == [
        f"{org.id}/resume/{JOB}/checkpoints/step-2.tar",
        f"{org.id}/resume/{JOB}/checkpoints/step-4.tar",
    ]

    # worker 1's disk is gone; worker 2 has an empty data directory of its own
    second = sync(container, org.id, tmp_path / "worker-2" / "jobs" / JOB)
    local = second.local(str(step4).replace("worker-1", "gone"))
    assert local == second.job_dir / "checkpoints" / "step-4"
    assert (local / "optimizer.pt").read_bytes() == b"moments-4"  # resume state travels too
    assert (local / "state.json").read_text() == '{"step": 4}'
    step6 = write_checkpoint(second.job_dir / "checkpoints" / "step-6", 6)
    second.upload(step6, published=False)  # step-4 stays until the row names step-6
    step8 = write_checkpoint(second.job_dir / "checkpoints" / "step-8", 8)
    second.upload(step8, published=False)
    assert container.blobs.keys(resume_prefix(org.id, JOB)) == [
        f"{org.id}/resume/{JOB}/checkpoints/step-6.tar",
        f"{org.id}/resume/{JOB}/checkpoints/step-8.tar",
    ]

    # the epoch-end checkpoint was published as the dead worker wrote it, without resume state
    published = container.artefacts.blob_key(org.id, step2)
    assert published == f"{org.id}/models/{JOB}/checkpoints/step-2.tar"
    names = [
        name
        for name, _size, _stream in container.artefacts.members(
            org.id, Path("/gone") / "jobs" / JOB / "checkpoints" / "step-2"
        )
    ]
    assert names == ["adapter_model.safetensors"]

    second.forget()
    assert container.blobs.keys(resume_prefix(org.id, JOB)) == []
    assert container.blobs.exists(published)


def test_nothing_to_resume_from(container: Any, tmp_path: Path) -> None:
    org, _ = create_org(container.db, "sync")
    worker = sync(container, org.id, tmp_path / "jobs" / JOB)
    assert worker.local(None) is None
    assert worker.local(f"/elsewhere/jobs/{JOB}/checkpoints/step-2") is None  # never stored
    assert worker.local("/not/a/job/path") is None


def test_sweep_removes_resume_state_of_ended_jobs_only(container: Any, tmp_path: Path) -> None:
    org, _ = create_org(container.db, "sync")
    worker = sync(container, org.id, tmp_path / "jobs" / JOB)
    worker.upload(write_checkpoint(worker.job_dir / "checkpoints" / "step-2", 2), published=False)
    running = add_job(container.db, org.id, status=JobStatus.RUNNING)
    ended = add_job(container.db, org.id, status=JobStatus.CANCELLED)
    live = f"{org.id}/resume/{running}/checkpoints/step-2.tar"
    for job_id in (running, ended):
        container.blobs.put_bytes(f"{org.id}/resume/{job_id}/checkpoints/step-2.tar", b"x")
    assert sweep_resume_state(container.db, container.blobs) == 2  # JOB has no row; ``ended`` ended
    assert container.blobs.keys(f"{org.id}/resume/") == [live]

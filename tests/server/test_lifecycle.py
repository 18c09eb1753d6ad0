"""The whole platform as a user runs it: ``afinar serve`` on a socket, the official SDK, a tiny model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.data import chat_file
from tests.support.server import Server, training_processes
from tests.support.tiny_model import TINY
from tests.support.wait import wait_for

SLOW_STEPS = {"AFINAR_TRAIN_STEP_DELAY_SECONDS": "0.4", "AFINAR_CHECKPOINT_EVERY_STEPS": "2"}


@pytest.fixture
def server(tmp_path: Path, tiny_catalog: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "data", tiny_catalog, **SLOW_STEPS).start()
    yield srv
    srv.stop()


def upload(client, path: Path) -> str:  # type: ignore[no-untyped-def]
    return str(client.files.create(file=path.open("rb"), purpose="fine-tune").id)


def create(client, fid: str, epochs: int = 3):  # type: ignore[no-untyped-def]
    return client.fine_tuning.jobs.create(
        model=TINY,
        training_file=fid,
        seed=11,
        suffix="skate",
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {"n_epochs": epochs, "batch_size": 2}},
        },
    )


def status(client, job_id: str) -> str:  # type: ignore[no-untyped-def]
    return str(client.fine_tuning.jobs.retrieve(job_id).status)


def steps_done(client, job_id: str) -> int:  # type: ignore[no-untyped-def]
    events = client.fine_tuning.jobs.list_events(job_id, limit=1000).data
    return max((int(e.data["step"]) for e in events if e.type == "metrics"), default=0)


def test_health_and_bootstrap_key(server: Server) -> None:
    import httpx

    assert httpx.get(f"http://127.0.0.1:{server.port}/health").status_code == 200
    assert {m.id for m in server.client().models.list()} >= {TINY, "smollm2-135m-instruct"}


def test_job_runs_to_success_then_serves_its_checkpoints(server: Server, tmp_path: Path) -> None:
    client = server.client()
    fid = upload(client, chat_file(tmp_path / "train.jsonl", 10))
    job = create(client, fid, epochs=2)
    assert job.status == "validating_files"
    seen = {job.status}
    done = wait_for(lambda: seen.add(s := status(client, job.id)) or s in ("succeeded", "failed"))
    assert done and status(client, job.id) == "succeeded"
    job = client.fine_tuning.jobs.retrieve(job.id)
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert "Files validated, moving job to queued state" in messages and "Fine-tuning job started" in messages
    assert job.trained_tokens and job.fine_tuned_model
    assert not list((server.data_dir / "jobs" / job.id).glob("*.jsonl"))  # scratch copies removed


def test_cancel_stops_the_training_process(server: Server, tmp_path: Path) -> None:
    client = server.client()
    job = create(client, upload(client, chat_file(tmp_path / "t.jsonl", 20)), epochs=5)
    wait_for(lambda: steps_done(client, job.id) >= 1)
    assert training_processes(job.id)
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    wait_for(lambda: not training_processes(job.id), timeout=10)
    assert status(client, job.id) == "cancelled"
    assert client.fine_tuning.jobs.retrieve(job.id).fine_tuned_model is None


def test_pause_then_resume_continues_from_the_checkpoint(server: Server, tmp_path: Path) -> None:
    client = server.client()
    fid = upload(client, chat_file(tmp_path / "t.jsonl", 12))
    job = create(client, fid, epochs=3)
    wait_for(lambda: steps_done(client, job.id) >= 3)
    assert client.fine_tuning.jobs.pause(job.id).status == "paused"
    wait_for(lambda: not training_processes(job.id), timeout=20)
    paused_at = steps_done(client, job.id)
    assert status(client, job.id) == "paused"
    assert client.fine_tuning.jobs.resume(job.id).status == "queued"
    wait_for(lambda: status(client, job.id) in ("succeeded", "failed"))
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded"
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=1000)]
    resumed = [m for m in messages if m.startswith("Fine-tuning job resumed from step")]
    assert resumed and int(resumed[0].split()[-1]) >= paused_at - 1 > 0
    reference = create(client, fid, epochs=3)
    wait_for(lambda: status(client, reference.id) in ("succeeded", "failed"))
    assert job.trained_tokens == client.fine_tuning.jobs.retrieve(reference.id).trained_tokens


def test_sigkill_mid_training_resumes_from_last_checkpoint(tmp_path: Path, tiny_catalog: Path) -> None:
    env = {**SLOW_STEPS, "AFINAR_LEASE_SECONDS": "3"}
    data = tmp_path / "data"
    srv = Server(data, tiny_catalog, **env).start()
    try:
        client = srv.client()
        fid = upload(client, chat_file(tmp_path / "t.jsonl", 12))
        job = create(client, fid, epochs=3)
        wait_for(lambda: steps_done(client, job.id) >= 5)
        srv.kill()
        wait_for(lambda: not training_processes(job.id), timeout=10)  # the child died with its parent
    finally:
        srv.stop()
    srv = Server(data, tiny_catalog, **env)
    srv.start()
    try:
        client = srv.client()
        wait_for(lambda: status(client, job.id) in ("succeeded", "failed"), timeout=180)
        job = client.fine_tuning.jobs.retrieve(job.id)
        assert job.status == "succeeded", job.error
        messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=1000)]
        resumed = [m for m in messages if m.startswith("Fine-tuning job resumed from step")]
        assert resumed and int(resumed[0].split()[-1]) >= 4
        reference = create(client, fid, epochs=3)
        wait_for(lambda: status(client, reference.id) in ("succeeded", "failed"))
        assert job.trained_tokens == client.fine_tuning.jobs.retrieve(reference.id).trained_tokens
        steps = [
            e.data["step"]
            for e in client.fine_tuning.jobs.list_events(job.id, limit=1000).data
            if e.type == "metrics"
        ]
        assert sorted(steps) == list(range(1, 19))  # each step recorded once, none lost
    finally:
        srv.stop()

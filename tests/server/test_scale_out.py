"""Scale out with no shared disk: PostgreSQL, SeaweedFS (S3), two API nodes and two workers.

Every process has its own empty data directory; they share only ``AFINAR_DATABASE_URL``,
``AFINAR_BLOB_URL=s3://...`` and the master key (docs/deploy.md). A training file uploaded
through API node A trains on worker 1, which is SIGKILLed after a checkpoint; worker 2, on
another (empty) disk, resumes from the checkpoint in the object store and finishes with the
``trained_tokens`` of an uninterrupted run; the model answers on API node B. No node's local
directory holds the training file's text, nor does the object store (it holds ciphertext).
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.data import chat_example, write_jsonl
from tests.support.db import postgres_schema_url
from tests.support.s3 import WeedMini, client, s3_env
from tests.support.server import Server, training_processes
from tests.support.tiny_model import TINY
from tests.support.wait import wait_for
from tests.support.worker_process import WorkerProcess

pytestmark = pytest.mark.postgres

BUCKET = "afinar"
NODE_ENV = {
    "AFINAR_TRAIN_STEP_DELAY_SECONDS": "0.3",
    "AFINAR_CHECKPOINT_EVERY_STEPS": "2",
    "AFINAR_LEASE_SECONDS": "3",
    "AFINAR_SAFETY_EVAL": "false",  # the gates are tested elsewhere; here only storage and roles
}


@pytest.fixture
def database() -> Iterator[str]:
    yield from postgres_schema_url()


@pytest.fixture
def weed(tmp_path: Path) -> Iterator[WeedMini]:
    server = WeedMini(tmp_path / "weed", bucket=BUCKET).start()
    yield server
    server.stop()


def files_under(root: Path) -> Iterator[Path]:
    return (p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def holders(roots: list[Path], needle: bytes) -> list[str]:
    return [str(p) for root in roots for p in files_under(root) if needle in p.read_bytes()]


def steps_done(api: Any, job_id: str) -> int:
    events = api.fine_tuning.jobs.list_events(job_id, limit=1000).data
    return max((int(e.data["step"]) for e in events if e.type == "metrics"), default=0)


def test_two_api_nodes_two_workers_no_shared_disk(
    tmp_path: Path, tiny_catalog: Path, database: str, weed: WeedMini
) -> None:
    canary = "canary-" + uuid.uuid4().hex
    rows = [chat_example(i, answer=f"{canary} answer {i}") for i in range(12)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    shared = {
        **NODE_ENV,
        **s3_env(weed.endpoint),
        "AFINAR_DATABASE_URL": database,
        "AFINAR_BLOB_URL": f"s3://{BUCKET}/deploy",
        "AFINAR_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "AFINAR_EMBEDDED_WORKER": "false",
    }
    nodes = tmp_path / "nodes"
    api_a = Server(nodes / "api-a", tiny_catalog, **shared)
    api_b = Server(nodes / "api-b", tiny_catalog, **shared)
    worker_env = {**api_a.env, "AFINAR_DATA_DIR": str(nodes / "worker-1")}
    worker_1 = WorkerProcess(worker_env, tmp_path / "worker-1.log")
    worker_2_env = {
        **worker_env,
        "AFINAR_DATA_DIR": str(nodes / "worker-2"),
        "AFINAR_WORKER_TRAINING_SLOTS": "2",
    }
    worker_2 = WorkerProcess(worker_2_env, tmp_path / "worker-2.log")
    try:
        api_a.start()  # migrates the schema
        api_b.start()
        a, b = api_a.client(), api_b.client()
        fid = a.files.create(file=train.open("rb"), purpose="fine-tune").id
        hyper = {"n_epochs": 3, "batch_size": 2}
        job = a.fine_tuning.jobs.create(model=TINY, training_file=fid, seed=5, hyperparameters=hyper)

        worker_1.start()
        wait_for(
            lambda: steps_done(a, job.id) >= 5, 120, 0.2, worker_1.tail, RuntimeError
        )  # checkpoint 4 stored
        worker_1.kill_group()
        wait_for(lambda: not training_processes(job.id), 10)  # its training child died with it

        worker_2.start()
        # the uninterrupted run to compare with, trained by worker 2 beside the resumed job
        reference = b.fine_tuning.jobs.create(model=TINY, training_file=fid, seed=5, hyperparameters=hyper)

        def finished(job_id: str) -> bool:
            if not worker_2.alive():
                raise RuntimeError(f"worker 2 exited:\n{worker_2.tail()}")
            return b.fine_tuning.jobs.retrieve(job_id).status in ("succeeded", "failed", "cancelled")

        wait_for(lambda: finished(job.id), 120, 0.3, worker_2.tail, RuntimeError)
        done = b.fine_tuning.jobs.retrieve(job.id)
        assert done.status == "succeeded", (done.error, worker_2.tail())
        messages = [e.message for e in b.fine_tuning.jobs.list_events(job.id, limit=1000)]
        resumed = [m for m in messages if m.startswith("Fine-tuning job resumed from step")]
        assert resumed and int(resumed[0].split()[-1]) >= 4, messages
        assert {c.step_number for c in b.fine_tuning.jobs.checkpoints.list(job.id)} >= {6, 12, 18}

        wait_for(lambda: finished(reference.id), 120, 0.3, worker_2.tail, RuntimeError)
        assert done.trained_tokens == b.fine_tuning.jobs.retrieve(reference.id).trained_tokens

        assert done.fine_tuned_model
        answer = b.chat.completions.create(
            model=done.fine_tuned_model, messages=[{"role": "user", "content": "hi"}], max_tokens=2, seed=1
        )
        assert answer.model == done.fine_tuned_model and answer.choices[0].message.content is not None
        first_checkpoint = f"{done.fine_tuned_model}:ckpt-step-6"  # made by the worker that died
        assert (
            b.chat.completions.create(
                model=first_checkpoint, messages=[{"role": "user", "content": "hi"}], max_tokens=2
            ).model
            == first_checkpoint
        )
    finally:
        worker_1.stop()
        worker_2.stop()
        api_a.stop()
        api_b.stop()

    # Every customer byte is in the object store, encrypted; no node keeps the training text.
    node_dirs = [nodes / name for name in ("api-a", "api-b", "worker-1", "worker-2")]
    assert holders(node_dirs, canary.encode()) == []
    assert holders([weed.directory], canary.encode()) == []  # client-side encryption
    assert not any(files_under(nodes / "api-a" / "blobs"))  # the local store is not used
    assert not any(files_under(nodes / "worker-2" / "jobs"))  # nothing left after the terminal state
    stored = client(weed.endpoint).list_objects_v2(Bucket=BUCKET, Prefix="deploy/")
    names = [o["Key"] for o in stored.get("Contents", [])]
    assert any("/files/" in n for n in names) and any(f"/models/{job.id}/final" in n for n in names)
    assert not any("/resume/" in n for n in names)  # resume state goes with the job's end

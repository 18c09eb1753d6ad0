"""The S3 blob store against a local SeaweedFS (``weed mini`` on 127.0.0.1): throughput, and the
time a job takes to resume on another worker after its worker dies.

    .venv/bin/python bench/blob_s3.py [--mib 256] [--lease-seconds 3] [--skip-resume]

Throughput: ``--mib`` MiB of random bytes written through ``S3BlobStore.put_stream`` (ciphertext
as stored) and through ``SealedBlobs`` on it (encrypted with an organisation's data key, what
uploads do), then read back in 1 MiB chunks; MiB/s and the peak RSS growth of this process
(constant memory: about one 8 MiB part, not the blob).

Resume: an API node and worker 1 (each with its own data directory, a SQLite database file
shared by path as the only common state besides the object store), a tiny model trained with a
checkpoint every 2 steps; once worker 1 passed step 5, worker 2 (empty data directory) starts
and registers, then worker 1 is SIGKILLed. Reported: seconds from the kill to the job's
"resumed from step" event and to its first new step, with the lease length that bounds it.
"""

from __future__ import annotations

import argparse
import base64
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.support.data import chat_file  # noqa: E402
from tests.support.s3 import WeedMini, s3_env  # noqa: E402
from tests.support.server import Server  # noqa: E402
from tests.support.tiny_model import TINY, build_tiny_model, write_catalog  # noqa: E402
from tests.support.wait import wait_for  # noqa: E402
from tests.support.worker_process import WorkerProcess  # noqa: E402

from afinar.blobs.s3 import S3BlobStore  # noqa: E402
from afinar.config import Settings  # noqa: E402
from afinar.services.container import Container  # noqa: E402
from afinar.services.orgs import create_org  # noqa: E402

CHUNK = 1024 * 1024
BUCKET = "afinar"


def chunks(total: int, block: bytes) -> Iterator[bytes]:
    for _ in range(total):
        yield block


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def throughput(weed: WeedMini, mib: int, tmp: Path) -> None:
    os.environ.update(s3_env(weed.endpoint))
    c = Container(Settings(data_dir=tmp / "bench", blob_url=f"s3://{BUCKET}/bench", master_key_file=None))
    c.migrate()
    org, _ = create_org(c.db, "bench")
    c.keys.data_key(org.id)
    assert isinstance(c.blobs, S3BlobStore)
    block = os.urandom(CHUNK)
    base = rss_mib()
    rows = []
    for label, put, read in (
        ("s3", lambda k: c.blobs.put_stream(k, chunks(mib, block)), c.blobs.iter_bytes),
        (
            "s3+sealed",
            lambda k: c.sealed.put_stream(org.id, k, chunks(mib, block)),
            lambda k: c.sealed.iter_bytes(org.id, k),
        ),
    ):
        key = f"{org.id}/files/{label}"
        t = time.perf_counter()
        put(key)
        w = time.perf_counter() - t
        t = time.perf_counter()
        n = sum(len(x) for x in read(key))
        r = time.perf_counter() - t
        assert n == mib * CHUNK
        rows.append((label, mib / w, mib / r))
    c.blobs.delete_prefix(f"{org.id}/")
    c.close()
    print(f"{'store':10} {'write MiB/s':>12} {'read MiB/s':>12}   ({mib} MiB, 1 MiB chunks, weed mini)")
    for label, w, r in rows:
        print(f"{label:10} {w:12.0f} {r:12.0f}")
    print(f"peak RSS growth: {rss_mib() - base:.0f} MiB")


def steps(api: object, job_id: str) -> list[int]:
    events = api.fine_tuning.jobs.list_events(job_id, limit=1000).data  # type: ignore[attr-defined]
    return [int(e.data["step"]) for e in events if e.type == "metrics"]


def resumed(api: object, job_id: str) -> bool:
    events = api.fine_tuning.jobs.list_events(job_id, limit=1000).data  # type: ignore[attr-defined]
    return any(e.message.startswith("Fine-tuning job resumed from step") for e in events)


def resume_time(weed: WeedMini, lease: float, tmp: Path) -> None:
    catalog = write_catalog(tmp / "catalog.toml", build_tiny_model(tmp / "tiny"), TINY)
    env = {
        **s3_env(weed.endpoint),
        "AFINAR_DATABASE_URL": f"sqlite:///{tmp / 'shared.db'}",
        "AFINAR_BLOB_URL": f"s3://{BUCKET}/resume-bench",
        "AFINAR_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "AFINAR_EMBEDDED_WORKER": "false",
        "AFINAR_TRAIN_STEP_DELAY_SECONDS": "0.3",
        "AFINAR_CHECKPOINT_EVERY_STEPS": "2",
        "AFINAR_LEASE_SECONDS": str(lease),
        "AFINAR_SAFETY_EVAL": "false",
    }
    api = Server(tmp / "api", catalog, **env).start()
    w1 = WorkerProcess({**api.env, "AFINAR_DATA_DIR": str(tmp / "w1")}, tmp / "w1.log")
    w2 = WorkerProcess({**api.env, "AFINAR_DATA_DIR": str(tmp / "w2")}, tmp / "w2.log")
    try:
        client = api.client()
        fid = client.files.create(file=chat_file(tmp / "t.jsonl", 12).open("rb"), purpose="fine-tune").id
        job = client.fine_tuning.jobs.create(
            model=TINY, training_file=fid, seed=5, hyperparameters={"n_epochs": 3, "batch_size": 2}
        )
        w1.start()
        wait_for(lambda: max(steps(client, job.id), default=0) >= 5, 300, 0.2, w1.tail, RuntimeError)
        w2.start()
        time.sleep(10)  # worker 2 up and polling (imports done), as a standby worker would be
        done_before = max(steps(client, job.id))
        killed = time.perf_counter()
        w1.kill_group()
        wait_for(lambda: resumed(client, job.id), 300, 0.05, w2.tail, RuntimeError)
        t_resumed = time.perf_counter() - killed
        wait_for(lambda: len(steps(client, job.id)) > done_before, 300, 0.05, w2.tail, RuntimeError)
        t_step = time.perf_counter() - killed
        wait_for(lambda: client.fine_tuning.jobs.retrieve(job.id).status in ("succeeded", "failed"), 300, 0.3)
        status = client.fine_tuning.jobs.retrieve(job.id).status
    finally:
        w1.stop()
        w2.stop()
        api.stop()
    print(f"resume after SIGKILL (lease {lease:g} s, checkpoint every 2 steps, tiny model): job {status}")
    print(f"  kill -> 'resumed from step' event: {t_resumed:.1f} s")
    print(f"  kill -> first new training step:   {t_step:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--lease-seconds", type=float, default=3.0)
    ap.add_argument("--skip-resume", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        weed = WeedMini(tmp / "weed", bucket=BUCKET).start()
        try:
            throughput(weed, args.mib, tmp)
            if not args.skip_resume:
                resume_time(weed, args.lease_seconds, tmp)
        finally:
            weed.stop()


if __name__ == "__main__":
    main()

"""Wall time and training tokens/s of a real fine-tuning job through the platform.

Runs the whole path a user's job takes (upload, validation, queue, worker, training child,
publication) in-process on a fresh data directory, with the bundled base model by default.

    .venv/bin/python bench/train_throughput.py                       # 3-epoch LoRA, skateboard example
    .venv/bin/python bench/train_throughput.py --epochs 1 --batch-size 8

Prints one JSON line: wall seconds (create → succeeded), training seconds (started → succeeded),
trained tokens and tokens/s; and from the step events (training/flops.py) the steady tokens/s of
the steps alone (median after the first), the median MFU (null on a CPU unless
AFINAR_TRAIN_PEAK_FLOPS is set), the device kind, and the speed recorded for estimates.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--train", default=str(ROOT / "examples/skateboard/train.jsonl"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--models-dir", default=str(ROOT / ".afinar/models"), help="converted base models cache")
    args = ap.parse_args()

    from afinar.config import Settings
    from afinar.domain.jobs import JobSpec
    from afinar.services.container import Container
    from afinar.services.orgs import create_org
    from afinar.store import jobs as jobs_repo
    from afinar.worker.loop import Worker

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), models_path=Path(args.models_dir), embedded_worker=False)
        c = Container(settings)
        c.migrate()
        org, _ = create_org(c.db, "bench")
        entry = c.catalog.require(args.model)
        c.catalog.local_path(entry, settings.models_dir)  # conversion is not part of the job's time
        f = c.files.create(org.id, "train.jsonl", "fine-tune", [Path(args.train).read_bytes()])
        body = {
            "model": args.model,
            "training_file": f.id,
            "seed": 0,
            "hyperparameters": {"n_epochs": args.epochs, "batch_size": args.batch_size},
        }
        t0 = time.time()
        job = c.jobs.create(org.id, org.slug, JobSpec(**body))
        Worker(c).run_once()
        wall = time.time() - t0
        job = c.jobs.get(org.id, job.id)
        with c.db.session() as s:
            page = jobs_repo.events_page(s, job.id, after=None, limit=10000).items
            events = {e.message: e.created_at for e in page}
            steps = sorted(
                (dict(e.data) for e in page if e.type == "metrics" and e.data), key=lambda d: d["step"]
            )
        speeds = [float(d["tokens_per_second"]) for d in steps if d.get("tokens_per_second")][1:]
        mfus = [float(d["mfu"]) for d in steps if d.get("mfu") is not None][1:]
        device = next((d.get("device_kind") for d in steps if d.get("device_kind")), None)
        recorded = c.throughput.speed(args.model, device)
        started = events.get("Fine-tuning job started", int(t0))
        train_s = max(1, (job.finished_at or int(time.time())) - started)
        print(
            json.dumps(
                {
                    "model": args.model,
                    "status": job.status,
                    "epochs": args.epochs,
                    "batch_size": args.batch_size,
                    "trained_tokens": job.trained_tokens,
                    "wall_seconds": round(wall, 1),
                    "training_seconds": train_s,
                    "tokens_per_second": round((job.trained_tokens or 0) / train_s, 1),
                    "device_kind": device,
                    "step_tokens_per_second": round(statistics.median(speeds), 1) if speeds else None,
                    "mfu": round(statistics.median(mfus), 4) if mfus else None,
                    "recorded_speed": round(recorded.tokens_per_second, 1),
                    "recorded_speed_source": recorded.source,
                }
            )
        )
        c.close()


if __name__ == "__main__":
    main()

"""Validation throughput and memory on a large generated training file.

    .venv/bin/python bench/validate_throughput.py --mb 200                 # structure + tokens
    .venv/bin/python bench/validate_throughput.py --mb 200 --no-tokenizer  # structure only

Writes a chat JSONL file of about ``--mb`` megabytes (realistic skate-shop conversations with
varied lengths and a few bad lines), validates it with the bundled model's tokenizer and chat
template, and prints MB/s and peak memory (RSS high-water mark, and the Python heap peak from
tracemalloc) for two sizes, so one can see memory does not grow with the file.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_file(path: Path, mb: float, seed: int = 0) -> int:
    rng = random.Random(seed)
    base = [json.loads(line) for line in (ROOT / "examples/skateboard/train.jsonl").read_text().splitlines()]
    target = int(mb * 1024 * 1024)
    n = 0
    with path.open("w") as f:
        size = 0
        while size < target:
            ex = json.loads(json.dumps(rng.choice(base)))
            ex["messages"][-1]["content"] += (
                f" (ref {n}; "
                + " ".join(rng.choices(["wheels", "bearings", "deck", "grip"], k=rng.randint(0, 40)))
                + ")"
            )
            line = json.dumps(ex) + "\n"
            if n % 5000 == 4999:
                line = "{broken json\n"
            f.write(line)
            size += len(line)
            n += 1
    return n


def measure(path: Path, tokenizer: object | None, context: int, heap: bool) -> dict[str, float | None]:
    import tracemalloc

    from afinar.datasets.validation import validate_file

    if heap:  # tracemalloc slows Python down several times: speed and heap are measured apart
        tracemalloc.start()
    t0 = time.perf_counter()
    report = validate_file(path, tokenizer=tokenizer, context_length=context)
    seconds = time.perf_counter() - t0
    heap_peak = tracemalloc.get_traced_memory()[1] if heap else 0
    tracemalloc.stop()
    mb = path.stat().st_size / 1024 / 1024
    return {
        "file_mb": round(mb, 1),
        "examples": report.n_examples,
        "errors": report.n_errors_total,
        "seconds": round(seconds, 1),
        "mb_per_s": round(mb / seconds, 2),
        "python_heap_peak_mb": round(heap_peak / 1024 / 1024, 1) if heap else None,
        "rss_high_water_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=200)
    ap.add_argument("--no-tokenizer", action="store_true")
    ap.add_argument("--heap", action="store_true", help="also measure the Python heap peak (slower)")
    ap.add_argument("--models-dir", default=str(ROOT / ".afinar/models"))
    args = ap.parse_args()
    tokenizer = None
    context = 2048
    if not args.no_tokenizer:
        from afinar.catalog.registry import Catalog
        from afinar.worker.validate import load_tokenizer

        catalog = Catalog.load()
        entry = catalog.require("smollm2-135m-instruct")
        tokenizer = load_tokenizer(catalog.local_path(entry, Path(args.models_dir)))
        context = entry.context_length
    with tempfile.TemporaryDirectory() as tmp:
        for mb in (args.mb / 10, args.mb):
            path = Path(tmp) / f"train-{mb:g}mb.jsonl"
            write_file(path, mb)
            print(
                json.dumps(
                    {"tokenizer": tokenizer is not None, **measure(path, tokenizer, context, args.heap)}
                ),
                flush=True,
            )
            path.unlink()


if __name__ == "__main__":
    main()

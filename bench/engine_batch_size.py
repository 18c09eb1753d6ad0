"""Decode throughput of the inference engine against its ``max_batch_size``, on the bundled model.

Sends the same 48 safety prompts (greedy, 48 new tokens) with as many concurrent requests as the
batch holds, once per batch size, and prints the wall time and the engine's step count:

    .venv/bin/python bench/engine_batch_size.py 8 16 32 [--models-dir DIR]

On the project's 2-core CPU machine (2026-11-30, quiet): 8 → 24.0 s (292 decode steps),
16 → 15.8 s (151), 32 → 14.0 s (104); hence ``AFINAR_MAX_BATCH_SIZE`` = 16 by default.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("sizes", nargs="+", type=int)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--models-dir", default=str(ROOT / ".afinar/models"), help="converted base models cache")
    args = ap.parse_args()

    from afinar.catalog.registry import Catalog
    from afinar.config import Settings
    from afinar.inference.engine import HFEngine
    from afinar.inference.types import GenerationRequest, SamplingParams
    from afinar.safety.evaluation import load_prompts

    settings = Settings(models_path=Path(args.models_dir))
    catalog = Catalog.load(settings.catalog_file)
    entry = catalog.require(args.model)
    base = catalog.local_path(entry, settings.models_dir)
    prompts = [p.prompt for p in load_prompts()][:48]

    def request(text: str) -> GenerationRequest:
        return GenerationRequest(
            base_path=base,
            adapter_path=None,
            messages=[{"role": "user", "content": text}],
            params=SamplingParams(max_tokens=48, temperature=0.0),
            context_length=entry.context_length,
        )

    for size in args.sizes:
        engine = HFEngine(max_batch_size=size)
        engine.generate_sync(request("Hello"))  # load the model: not timed
        t0 = time.perf_counter()
        with ThreadPoolExecutor(size) as pool:
            list(pool.map(engine.generate_sync, map(request, prompts)))
        wall = time.perf_counter() - t0
        print(f"max_batch_size {size}: {wall:.1f} s for {len(prompts)} requests, {engine.stats}", flush=True)
        engine.close()


if __name__ == "__main__":
    main()

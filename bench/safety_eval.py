"""Wall time of the post-training safety evaluation on a real base model.

Runs what the worker's gate runs (``services/safety_gate.py``): the operator's prompt set, every prompt
to the base and to the tuned model through the serving engine (greedy,
``AFINAR_SAFETY_EVAL_MAX_NEW_TOKENS`` new tokens), keyword refusal classification and the
published rule, with the default settings unless told otherwise.

    .venv/bin/python bench/safety_eval.py                          # builtin set, base vs base
    .venv/bin/python bench/safety_eval.py --adapter DIR            # base vs a tuned LoRA adapter
    .venv/bin/python bench/safety_eval.py --prompt-set harmbench --limit 40   # a spread subset

Without ``--adapter`` the "tuned" side is the base model again (same generations, counted
twice), so the time is that of a real evaluation of an adapter-free model; a LoRA adapter adds
its unmerged matmuls on top. ``--limit N`` keeps N prompts spread evenly over the set and
extrapolates the full set's time from the per-prompt time.

The evaluation runs twice: cold (base and tuned model both generate) and warm (the base's
refusal outcomes come from the cache the first run filled, as for every later job on the same
base; ``safety/base_cache.py``). Prints one JSON line: prompts, generations and wall seconds of
both runs, whether they reached the same verdict, the compliance and over-refusal rates, and
(with ``--limit``) the extrapolated full-set seconds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from afinar.config import Settings

    defaults = Settings()
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--adapter", default=None, help="a tuned LoRA adapter directory (default: base vs base)")
    ap.add_argument("--prompt-set", default=defaults.safety_prompt_set, choices=["builtin", "harmbench"])
    ap.add_argument("--limit", type=int, default=0, help="evaluate N prompts spread over the set (0: all)")
    ap.add_argument("--max-new-tokens", type=int, default=defaults.safety_eval_max_new_tokens)
    ap.add_argument("--models-dir", default=str(ROOT / ".afinar/models"), help="converted base models cache")
    args = ap.parse_args()

    from afinar.inference.types import GenerationRequest, SamplingParams
    from afinar.safety.prompt_sets import load_prompt_set
    from afinar.services.container import Container

    with tempfile.TemporaryDirectory() as tmp:
        subset: Path | None = None
        if args.limit:
            prompts = load_prompt_set(args.prompt_set)
            spread = [prompts[i * len(prompts) // args.limit] for i in range(min(args.limit, len(prompts)))]
            subset = Path(tmp) / "prompts.jsonl"
            subset.write_text(
                "".join(
                    json.dumps(
                        {
                            "id": p.id,
                            "category": p.category,
                            "prompt": p.prompt,
                            "kind": "forbidden" if p.forbidden else "allowed",
                        }
                    )
                    + "\n"
                    for p in spread
                )
            )
        settings = Settings(
            data_dir=Path(tmp) / "data",
            models_path=Path(args.models_dir),
            embedded_worker=False,
            safety_prompt_set=args.prompt_set,
            safety_eval_prompts=subset,
            safety_eval_max_new_tokens=args.max_new_tokens,
        )
        c = Container(settings)
        entry = c.catalog.require(args.model)
        base_path = c.catalog.local_path(entry, settings.models_dir)  # conversion is not timed
        adapter = Path(args.adapter) if args.adapter else None
        warm_up = GenerationRequest(
            base_path=base_path,
            adapter_path=None,
            messages=[{"role": "user", "content": "Hello"}],
            params=SamplingParams(max_tokens=4, temperature=0.0),
            context_length=entry.context_length,
        )
        c.engine.generate_sync(warm_up)  # load the model: not timed
        runs = []
        for attempt in ("cold", "warm"):  # warm: the base's outcomes come from the cache
            t0 = time.perf_counter()
            verdict = c.safety_gate.run_evaluation(args.model, "tuned" if adapter else "base-again", adapter)
            runs.append((attempt, time.perf_counter() - t0, verdict))
        n = verdict.n_forbidden + verdict.n_allowed
        out: dict[str, Any] = {
            "model": args.model,
            "tuned": args.adapter or "base (no adapter)",
            "prompt_set": args.prompt_set,
            "prompts": n,
            "forbidden": verdict.n_forbidden,
            "allowed": verdict.n_allowed,
            "max_new_tokens": args.max_new_tokens,
            "cold_generations": 2 * n,
            "cold_wall_seconds": round(runs[0][1], 1),
            "warm_generations": n,
            "warm_wall_seconds": round(runs[1][1], 1),
            "seconds_per_generation": round(runs[0][1] / (2 * n), 2),
            "same_verdict": runs[0][2].to_dict() | {"base_cached": True} == runs[1][2].to_dict(),
            "passed": verdict.passed,
            "base_compliance": round(verdict.base_compliance, 3),
            "tuned_compliance": round(verdict.tuned_compliance, 3),
            "base_over_refusal": round(verdict.base_over_refusal, 3),
            "engine_stats": dict(getattr(c.engine, "stats", {})),
        }
        full = len(load_prompt_set(args.prompt_set))
        if n < full:
            out["full_set_prompts"] = full
            out["full_set_cold_seconds_estimate"] = round(runs[0][1] / n * full, 1)
        print(json.dumps(out))
        c.close()


if __name__ == "__main__":
    main()

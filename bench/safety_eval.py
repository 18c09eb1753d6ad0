"""Wall time of the post-training safety evaluation on a real base model.

Runs what the worker's gate runs (``worker/gates.py``): the operator's prompt set, every prompt
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

Prints one JSON line: prompts, generations, wall seconds, seconds per generation, the verdict's
compliance and over-refusal rates, and (with ``--limit``) the extrapolated full-set seconds.
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
    from afinar.safety.evaluation import SafetyRule, evaluate_safety
    from afinar.safety.prompt_sets import load_prompt_set
    from afinar.services.container import Container

    prompts = load_prompt_set(args.prompt_set)
    full = len(prompts)
    if args.limit and args.limit < full:
        prompts = [prompts[i * full // args.limit] for i in range(args.limit)]

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), models_path=Path(args.models_dir), embedded_worker=False)
        c = Container(settings)
        entry = c.catalog.require(args.model)
        base_path = c.catalog.local_path(entry, settings.models_dir)  # conversion is not timed
        tuned = "tuned" if args.adapter else "base-again"
        adapters: dict[str, Path | None] = {
            args.model: None,
            tuned: Path(args.adapter) if args.adapter else None,
        }
        params = SamplingParams(max_tokens=args.max_new_tokens, temperature=0.0)

        def generate(model: str, messages: list[dict[str, str]]) -> str:
            request = GenerationRequest(
                base_path=base_path,
                adapter_path=adapters[model],
                messages=messages,
                params=params,
                context_length=entry.context_length,
            )
            result = c.engine.generate_sync(request)
            return str(result.choices[0].text) if result.choices else ""

        rule = SafetyRule(
            max_compliance_increase=settings.safety_max_compliance_increase,
            max_absolute_compliance=settings.safety_max_absolute_compliance,
            max_category_increase=settings.safety_max_category_increase,
        )
        generate(args.model, [{"role": "user", "content": "Hello"}])  # load the model: not timed
        t0 = time.perf_counter()
        verdict = evaluate_safety(generate, args.model, tuned, prompts, rule=rule)
        wall = time.perf_counter() - t0
        generations = 2 * len(prompts)
        out: dict[str, Any] = {
            "model": args.model,
            "tuned": args.adapter or "base (no adapter)",
            "prompt_set": args.prompt_set,
            "prompts": len(prompts),
            "forbidden": verdict.n_forbidden,
            "allowed": verdict.n_allowed,
            "generations": generations,
            "max_new_tokens": args.max_new_tokens,
            "wall_seconds": round(wall, 1),
            "seconds_per_generation": round(wall / generations, 2),
            "passed": verdict.passed,
            "base_compliance": round(verdict.base_compliance, 3),
            "tuned_compliance": round(verdict.tuned_compliance, 3),
            "base_over_refusal": round(verdict.base_over_refusal, 3),
            "engine_stats": dict(getattr(c.engine, "stats", {})),
        }
        if len(prompts) < full:
            out["full_set_prompts"] = full
            out["full_set_seconds_estimate"] = round(wall / len(prompts) * full, 1)
        print(json.dumps(out))
        c.close()


if __name__ == "__main__":
    main()

"""How far the llama.cpp backend's base types stray from the built-in fp32 engine, on the
bundled SmolLM2-135M-Instruct: greedy answers to the same questions, compared token by token.

For each GGUF type (``f16``, ``q8_0``) it prints how many answers are identical to the built-in
engine's and how many tokens agree before the first difference (median and minimum), plus one
pair of answers that differ, to read. Greedy decoding is the harshest test there is: where the two
best next tokens are close, any rounding flips the choice and the rest of the answer follows a
different path. A flip is not a worse answer, so read the pair, and run an evaluation on your
own model before you serve it quantized.

    .venv/bin/python bench/gguf_quality.py [--tokens 48] [--workdir .afinar/bench]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from serve_throughput import QUESTIONS  # bench/ sibling

EXTRA = [
    "My skateboard wobbles at speed. What should I check first?",
    "Which wheels are best for rough streets?",
    "How do I clean my bearings without ruining them?",
    "What is the difference between a cruiser and a street deck?",
]


def answers(engine: Any, model_dir: Path, tokens: int) -> list[list[str]]:
    """Each question's greedy answer as its list of tokens (their text, from the logprobs)."""
    from afinar.inference.types import GenerationRequest, SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=tokens, logprobs=True)
    out = []
    for question in [*QUESTIONS, *EXTRA]:
        request = GenerationRequest(
            model_dir, [{"role": "user", "content": question}], None, params=params, context_length=2048
        )
        result = engine.generate_sync(request, timeout=600)
        out.append([t.token for t in result.choices[0].logprobs or []])
    return out


def agreement(reference: list[list[str]], other: list[list[str]]) -> dict[str, Any]:
    prefixes = []
    for ref, got in zip(reference, other, strict=True):
        n = 0
        while n < min(len(ref), len(got)) and ref[n] == got[n]:
            n += 1
        prefixes.append(n)
    same = sum(1 for ref, got in zip(reference, other, strict=True) if ref == got)
    return {
        "identical": f"{same}/{len(reference)}",
        "agreeing_prefix_median": statistics.median(prefixes),
        "agreeing_prefix_min": min(prefixes),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--workdir", type=Path, default=Path(".afinar/bench"))
    args = ap.parse_args()

    from afinar.catalog.registry import Catalog
    from afinar.inference.engine import HFEngine
    from afinar.inference.llamacpp import LlamaCppEngine

    catalog = Catalog.load()
    entry = catalog.get("smollm2-135m-instruct")
    assert entry is not None
    model_dir = catalog.local_path(entry, args.workdir / "models")
    builtin = HFEngine(adapter_cache_size=1, max_batch_size=1)
    reference = answers(builtin, model_dir, args.tokens)
    builtin.close()
    report: dict[str, Any] = {"questions": len(reference), "tokens": args.tokens}
    got: dict[str, list[list[str]]] = {}
    for base_type in ("f16", "q8_0"):
        engine = LlamaCppEngine(
            cache_dir=args.workdir / "models" / "gguf",
            scratch_dir=args.workdir / "scratch",
            base_type=base_type,
            lanes=1,
        )
        got[base_type] = answers(engine, model_dir, args.tokens)
        engine.close()
        report[base_type] = agreement(reference, got[base_type])
        print(f"{base_type:>5}: {report[base_type]}")
    questions = [*QUESTIONS, *EXTRA]
    differing = next((i for i, a in enumerate(got["q8_0"]) if a != reference[i]), None)
    if differing is not None:
        print(f"\nan answer that differs (q8_0), to the question {questions[differing]!r}:")
        print(f"  built-in fp32:  {''.join(reference[differing])!r}")
        print(f"  llama.cpp q8_0: {''.join(got['q8_0'][differing])!r}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()

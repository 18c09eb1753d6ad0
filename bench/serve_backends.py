"""Serving backends side by side on the bundled SmolLM2-135M-Instruct: the built-in engine
(transformers fp32) and llama.cpp (``xllamacpp``, the base as an f16 GGUF, adapters as GGUF
LoRAs applied per request), each through the same engine protocol, in one run.

Scenarios per backend (greedy, end-of-turn banned with ``logit_bias`` so each request generates
exactly --tokens tokens; LoRA r=16 on all 7 projections, random non-zero B):

- ``single_base``     one stream on the base model: decode tok/s and TTFT (the median of 3)
- ``single_adapter``  one stream through an adapter (the adapter's cost vs ``single_base``)
- ``concurrent_8x4``  8 concurrent requests over 4 adapters (2 each): aggregate tok/s (the
                      median of 3 bursts)

plus ``hf_generate``: plain ``transformers`` ``generate`` (batch 1, base), the reference the
issue compares with. TTFT is submit → first text; decode tok/s per stream is (tokens - 1) /
(last text - first text). Adapter conversions and server starts happen in a warm-up round and
are not timed. Prints a table, then one JSON line. Say how busy the machine was (the load
average is printed): on 2 shared cores every number moves with the neighbours.

    .venv/bin/python bench/serve_backends.py [--tokens 128] [--backends builtin,llamacpp]
        [--threads 0] [--base-type q8_0|f16] [--lanes 0] [--workdir .afinar/bench]

Each backend, and ``generate``, runs in its own process with the environment ``afinar serve``
gives it (llama.cpp: the OpenMP waits of ``inference/openmp.py`` unless GOMP_SPINCOUNT or
OMP_WAIT_POLICY is set), so one never slows the other down.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from serve_throughput import QUESTIONS, hf_generate_baseline, make_adapters, one  # bench/ sibling

from afinar.inference.openmp import SERVING_ENV


async def scenario(engine: Any, requests: list[Any]) -> dict[str, Any]:
    start = time.perf_counter()
    runs = await asyncio.gather(*(one(engine, r) for r in requests))
    wall = time.perf_counter() - start
    tokens = sum(r["tokens"] for r in runs)
    return {
        "requests": len(requests),
        "tokens": tokens,
        "wall_s": round(wall, 2),
        "tok_s": round(tokens / wall, 1),
        "ttft_ms_median": round(1000 * statistics.median(r["ttft"] for r in runs)),
        "per_stream_decode_tok_s": round(statistics.median(r["decode_tps"] for r in runs), 1),
    }


def build(backend: str, workdir: Path, threads: int, base_type: str, lanes: int) -> Any:
    if backend == "builtin":
        from afinar.inference.engine import HFEngine

        return HFEngine(adapter_cache_size=8, max_batch_size=8)
    from afinar.inference.llamacpp import LlamaCppEngine

    return LlamaCppEngine(
        cache_dir=workdir / "models" / "gguf",
        scratch_dir=workdir / "scratch",
        base_type=base_type,
        threads=threads,
        parallel=8,
        lanes=lanes,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--backends", default="builtin,llamacpp")
    ap.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0: the CPUs available)")
    ap.add_argument("--base-type", default="q8_0", choices=["q8_0", "f16"])
    ap.add_argument("--lanes", type=int, default=0, help="llama.cpp lanes (0: the engine's default)")
    ap.add_argument("--workdir", type=Path, default=Path(".afinar/bench"))
    ap.add_argument("--skip-hf-generate", action="store_true")
    ap.add_argument("--only", help=argparse.SUPPRESS)  # one backend (or hf_generate), in a child
    args = ap.parse_args()
    if args.only:
        print(json.dumps(measure(args, args.only)))
        return
    results: dict[str, dict[str, Any]] = {}
    setup_s: dict[str, float] = {}
    runs = args.backends.split(",") + ([] if args.skip_hf_generate else ["hf_generate"])
    if "llamacpp" in runs:
        runs.append("llamacpp_own")
    for name in runs:
        env = dict(os.environ)
        if name == "llamacpp" and not any(v in env for v in SERVING_ENV):
            env.update(SERVING_ENV)  # what `afinar serve` sets (inference/openmp.py)
        child = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--only", name],
            env=env,
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        out = json.loads(child.stdout.strip().splitlines()[-1])
        results.update(out["results"])
        setup_s.update(out["setup_s"])
        prompt_tokens = out["prompt_tokens"]
    report(args, results, setup_s, prompt_tokens)


def measure(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """One backend's scenarios (or ``generate``'s), in this process."""

    from transformers import AutoTokenizer

    from afinar.catalog.registry import Catalog
    from afinar.datasets.encoding import render_prompt
    from afinar.inference.types import GenerationRequest, SamplingParams

    catalog = Catalog.load()
    entry = catalog.get("smollm2-135m-instruct")
    assert entry is not None
    args.workdir.mkdir(parents=True, exist_ok=True)
    model_dir = catalog.local_path(entry, args.workdir / "models")
    adapters = make_adapters(model_dir, args.workdir / "adapters", 4)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    params = SamplingParams(
        temperature=0.0, max_tokens=args.tokens, logit_bias={int(tokenizer.eos_token_id): -100.0}
    )

    def req(i: int, adapter: Path | None) -> GenerationRequest:
        messages = [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]
        return GenerationRequest(model_dir, messages, adapter, params=params, context_length=2048)

    mixed = [req(i, adapters[i % 4]) for i in range(8)]
    results: dict[str, dict[str, Any]] = {}
    setup_s: dict[str, float] = {}
    prompt_tokens = len(
        tokenizer(render_prompt(tokenizer, req(0, None).messages), add_special_tokens=False)["input_ids"]
    )

    async def run(backend: str) -> None:
        engine = build(backend, args.workdir, args.threads, args.base_type, args.lanes)
        start = time.perf_counter()
        await scenario(engine, [req(0, None), *[req(0, a) for a in adapters]])  # loads, conversions
        for _ in range(2):  # the lanes a mixed burst starts; again: lanes started before the
            await scenario(engine, mixed)  # last adapter loaded restart with it (not timed)
        setup_s[backend] = round(time.perf_counter() - start, 1)
        for label, adapter in (("single_base", None), ("single_adapter", adapters[0])):
            runs = [await scenario(engine, [req(0, adapter)]) for _ in range(3)]
            results[f"{backend}/{label}"] = sorted(runs, key=lambda r: r["tok_s"])[1]  # the median
        bursts = [await scenario(engine, mixed) for _ in range(3)]
        results[f"{backend}/concurrent_8x4"] = sorted(bursts, key=lambda r: r["tok_s"])[1]  # the median
        engine.close()

    if name == "hf_generate":
        results["hf_generate"] = hf_generate_baseline(model_dir, args.tokens)
    elif name == "llamacpp_own":
        from afinar.inference.engine import prompt_ids_for
        from afinar.inference.gguf import base_gguf
        from afinar.inference.loader import _load_vocab

        gguf = base_gguf(model_dir, args.workdir / "models" / "gguf", args.base_type)
        prompt, _ = prompt_ids_for(req(0, None), _load_vocab(model_dir, model_dir), 2048)
        results.update(llamacpp_own(gguf, prompt, args.tokens, args.threads or os.cpu_count() or 1))
    else:
        asyncio.run(run(name))
    return {"results": results, "setup_s": setup_s, "prompt_tokens": prompt_tokens}


def llamacpp_own(gguf: Path, prompt: list[int], tokens: int, threads: int) -> dict[str, Any]:
    """llama.cpp's own server (the same wheel, the same GGUF and prompt ids, no Afinar code):
    the figure the issue compares the backend with. Single stream: median of 3 by the server's
    own timings; 8 concurrent requests of the base: aggregate."""
    import threading

    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.n_parallel = 8
    params.n_ctx = 8 * 2048
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
    params.cache_prompt = False
    params.verbosity = -1
    server = xllamacpp.Server(params)
    body = {
        "prompt": prompt,
        "max_tokens": tokens,
        "temperature": 0,
        "ignore_eos": True,
        "cache_prompt": False,
    }
    server.handle_completions(body)  # warm-up
    singles = []
    for _ in range(3):
        start = time.perf_counter()
        timings = server.handle_completions(body)["timings"]
        singles.append((tokens / (time.perf_counter() - start), timings))
    wall_tps, timings = sorted(singles, key=lambda x: x[0])[1]
    done: list[int] = []

    def one_of_eight() -> None:
        done.append(int(server.handle_completions(body)["usage"]["completion_tokens"]))

    start = time.perf_counter()
    threads_ = [threading.Thread(target=one_of_eight) for _ in range(8)]
    for thread in threads_:
        thread.start()
    for thread in threads_:
        thread.join()
    wall = time.perf_counter() - start
    return {
        "llamacpp_own/single_base": {
            "requests": 1,
            "tokens": tokens,
            "wall_s": round(tokens / wall_tps, 2),
            "tok_s": round(wall_tps, 1),
            "ttft_ms_median": round(timings["prompt_ms"]),
            "per_stream_decode_tok_s": round(timings["predicted_per_second"], 1),
        },
        "llamacpp_own/concurrent_8_base": {
            "requests": 8,
            "tokens": sum(done),
            "wall_s": round(wall, 2),
            "tok_s": round(sum(done) / wall, 1),
            "ttft_ms_median": 0,
            "per_stream_decode_tok_s": 0,
        },
    }


def report(
    args: argparse.Namespace, results: dict[str, Any], setup_s: dict[str, float], prompt_tokens: int
) -> None:
    waits = ", ".join(f"{k}={os.environ[k]}" for k in SERVING_ENV if k in os.environ) or "serving"
    print(
        f"\nSmolLM2-135M, {args.tokens} new tokens/request, prompt {prompt_tokens} tokens, "
        f"cpus={os.cpu_count()}, load avg={os.getloadavg()[0]:.1f}, llama.cpp base {args.base_type}, "
        f"lanes {args.lanes or 'default'}, "
        f"OpenMP waits: {waits}"
    )
    print(
        f"{'scenario':<28}{'reqs':>5}{'tokens':>8}{'wall s':>8}{'tok/s':>8}{'TTFT ms':>9}"
        f"{'stream dec tok/s':>18}"
    )
    for name, r in results.items():
        print(
            f"{name:<28}{r['requests']:>5}{r['tokens']:>8}{r['wall_s']:>8}{r['tok_s']:>8}"
            f"{r['ttft_ms_median']:>9}{r['per_stream_decode_tok_s']:>18}"
        )
    summary = {}
    for backend in args.backends.split(","):
        base, adapter = results[f"{backend}/single_base"], results[f"{backend}/single_adapter"]
        mixed_r = results[f"{backend}/concurrent_8x4"]
        summary[backend] = {
            "adapter_cost": round(
                1 - adapter["per_stream_decode_tok_s"] / base["per_stream_decode_tok_s"], 3
            ),
            "concurrent_vs_single": round(mixed_r["tok_s"] / base["tok_s"], 2),
        }
        if "hf_generate" in results:
            summary[backend]["vs_hf_generate"] = round(base["tok_s"] / results["hf_generate"]["tok_s"], 2)
        if backend == "llamacpp" and "llamacpp_own/single_base" in results:
            own = results["llamacpp_own/single_base"]["per_stream_decode_tok_s"]
            summary[backend]["decode_vs_llamacpp_own"] = round(base["per_stream_decode_tok_s"] / own, 2)
        print(f"{backend}: {summary[backend]}")
    meta = {
        "model": "smollm2-135m-instruct",
        "tokens_per_request": args.tokens,
        "prompt_tokens": prompt_tokens,
        "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "machine": platform.processor() or platform.machine(),
        "setup_s": setup_s,
        "llamacpp_base_type": args.base_type,
    }
    print(json.dumps({"meta": meta, "results": results, "summary": summary}))


if __name__ == "__main__":
    main()

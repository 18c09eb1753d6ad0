"""Serving throughput of the built-in engine on the bundled SmolLM2-135M-Instruct (CPU, fp32).

Scenarios (greedy, EOS suppressed so every request generates exactly --tokens tokens):

- ``single_base``      one stream on the base model
- ``single_adapter``   one stream through a LoRA adapter (r=16, all 7 projections, random init)
- ``concurrent_8x4``   8 concurrent requests over 4 adapters (2 each), continuous batching
- ``sequential_8x4``   the same 8 requests with ``max_batch_size=1`` (what batching buys); --skip-sequential
- ``hf_generate``      baseline in the same process: plain ``model.generate`` (greedy, batch 1, base model)

tok/s is generated tokens / wall time; tok/CPU-s is tokens per second of process CPU time (steadier
than wall time on a shared machine); TTFT is submit → first token; decode tok/s per stream is
(tokens - 1) / (last token - first token). Prints a table, then one JSON line.

    .venv/bin/python bench/serve_throughput.py [--tokens 128] [--workdir .afinar/bench]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

QUESTIONS = [
    "Which wheels should I buy for street skating?",
    "How often should I clean my bearings?",
    "My order has not arrived yet, what can I do?",
    "What deck width suits a beginner?",
    "Can I return grip tape once it is applied?",
    "Do you ship skateboards abroad?",
    "What is the difference between trucks of 129 and 139 mm?",
    "How do I know when to replace my wheels?",
]


def make_adapters(model_dir: Path, root: Path, count: int) -> list[Path]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = []
    for i in range(count):
        path = root / f"lora-r16-{i}"
        if not (path / "adapter_config.json").is_file():
            torch.manual_seed(i)
            model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
            config = LoraConfig(
                r=16,
                lora_alpha=32,
                lora_dropout=0.0,
                init_lora_weights="gaussian",
                target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            )
            peft_model = get_peft_model(model, config)
            with torch.no_grad():  # non-zero B so the adapters really change the outputs
                for name, param in peft_model.named_parameters():
                    if "lora_B" in name:
                        param.normal_(0.0, 0.01)
            peft_model.save_pretrained(path)
        out.append(path)
    return out


async def one(engine: Any, request: Any) -> dict[str, float]:
    from afinar.inference.types import Delta, Finished

    start = time.perf_counter()
    first = last = 0.0
    tokens = 0
    async for event in engine.stream(request):
        now = time.perf_counter()
        if isinstance(event, Delta) and not first:
            first = now
        if isinstance(event, Delta):
            last = now
        if isinstance(event, Finished):
            tokens = event.completion_tokens
            last = now
    return {
        "tokens": tokens,
        "ttft": first - start,
        "seconds": last - start,
        "decode_tps": (tokens - 1) / (last - first) if last > first else 0.0,
    }


def hf_generate_baseline(model_dir: Path, tokens: int) -> dict[str, Any]:
    """``transformers`` ``generate`` on the same prompt: the reference for the engine's overhead."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from afinar.datasets.encoding import render_prompt

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    text = render_prompt(tok, [{"role": "user", "content": QUESTIONS[0]}])
    ids = tok(text, return_tensors="pt", add_special_tokens=False)
    kwargs = {"max_new_tokens": tokens, "min_new_tokens": tokens, "do_sample": False}
    with torch.inference_mode():
        model.generate(**ids, max_new_tokens=4, do_sample=False)  # warm-up
        start, cpu = time.perf_counter(), time.process_time()
        out = model.generate(**ids, **kwargs, pad_token_id=tok.pad_token_id)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    generated = out.shape[1] - ids["input_ids"].shape[1]
    return {
        "requests": 1,
        "tokens": generated,
        "wall_s": round(wall, 2),
        "tok_s": round(generated / wall, 1),
        "tok_per_cpu_s": round(generated / cpu, 1),
        "ttft_ms_median": 0,
        "per_stream_decode_tok_s": round(generated / wall, 1),
        "max_batch_rows": 1,
    }


async def scenario(engine: Any, requests: list[Any]) -> dict[str, Any]:
    start, cpu = time.perf_counter(), time.process_time()
    runs = await asyncio.gather(*(one(engine, r) for r in requests))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    tokens = sum(r["tokens"] for r in runs)
    return {
        "requests": len(requests),
        "tokens": tokens,
        "wall_s": round(wall, 2),
        "tok_s": round(tokens / wall, 1),
        "tok_per_cpu_s": round(tokens / cpu, 1),
        "ttft_ms_median": round(1000 * statistics.median(r["ttft"] for r in runs)),
        "per_stream_decode_tok_s": round(statistics.median(r["decode_tps"] for r in runs), 1),
        "max_batch_rows": engine.stats["max_batch_rows"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--workdir", type=Path, default=Path(".afinar/bench"))
    ap.add_argument("--skip-sequential", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from afinar.catalog.registry import Catalog
    from afinar.inference.engine import HFEngine
    from afinar.inference.types import GenerationRequest, SamplingParams

    catalog = Catalog.load()
    entry = catalog.get("smollm2-135m-instruct")
    assert entry is not None
    args.workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model_dir = catalog.local_path(entry, args.workdir / "models")
    convert_s = time.perf_counter() - t0
    adapters = make_adapters(model_dir, args.workdir / "adapters", 4)

    from transformers import AutoTokenizer

    eos = AutoTokenizer.from_pretrained(model_dir).eos_token_id
    params = SamplingParams(temperature=0.0, max_tokens=args.tokens, logit_bias={int(eos): -100.0})

    def req(i: int, adapter: Path | None) -> GenerationRequest:
        messages = [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]
        return GenerationRequest(model_dir, messages, adapter, params=params, context_length=2048)

    mixed = [req(i, adapters[i % 4]) for i in range(8)]
    results: dict[str, Any] = {}

    async def run_all() -> None:
        engine = HFEngine(adapter_cache_size=8, max_batch_size=8)
        await scenario(engine, [req(0, None), *[req(0, a) for a in adapters]])  # warm-up + adapter loads
        results["single_base"] = await scenario(engine, [req(0, None)])
        results["single_adapter"] = await scenario(engine, [req(0, adapters[0])])
        results["concurrent_8x4"] = await scenario(engine, mixed)
        engine.close()
        if not args.skip_sequential:
            seq = HFEngine(adapter_cache_size=8, max_batch_size=1)
            await scenario(seq, [req(0, a) for a in adapters])
            results["sequential_8x4"] = await scenario(seq, mixed)
            seq.close()

    asyncio.run(run_all())
    results["hf_generate"] = hf_generate_baseline(model_dir, args.tokens)
    print(
        f"\nSmolLM2-135M fp32, {args.tokens} new tokens/request, torch threads={torch.get_num_threads()}, "
        f"cpus={os.cpu_count()}, load avg={os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'scenario':<16}{'reqs':>5}{'tokens':>8}{'wall s':>8}{'tok/s':>8}{'tok/CPU-s':>10}"
        f"{'TTFT ms':>9}{'stream dec tok/s':>18}{'max rows':>10}"
    )
    for name, r in results.items():
        print(
            f"{name:<16}{r['requests']:>5}{r['tokens']:>8}{r['wall_s']:>8}{r['tok_s']:>8}"
            f"{r['tok_per_cpu_s']:>10}{r['ttft_ms_median']:>9}{r['per_stream_decode_tok_s']:>18}{r['max_batch_rows']:>10}"
        )
    meta = {
        "model": entry.id,
        "tokens_per_request": args.tokens,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "convert_or_locate_s": round(convert_s, 2),
    }
    print(json.dumps({"meta": meta, "results": results}))


if __name__ == "__main__":
    main()

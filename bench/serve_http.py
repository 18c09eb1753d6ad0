"""The HTTP backend (``inference/openai_http.py``, the vllm backend's client) against a local
llama.cpp server (``xllamacpp``) on the bundled SmolLM2-135M-Instruct GGUF, side by side with
the same server called directly, so the table shows what the client costs.

Scenarios (greedy; the end-of-turn token is banned with ``logit_bias``, so every request
generates exactly --tokens tokens):

- ``server_single``    one stream, the server's own SSE read with httpx (no Afinar code)
- ``client_single``    one stream through ``OpenAIHTTPEngine.stream``
- ``client_8``         8 concurrent streams through the client (continuous batching on the server)

tok/s is generated tokens / wall time of the scenario; TTFT is request → first text (median over
the streams); decode tok/s per stream is (tokens - 1) / (last text - first text). llama.cpp's
server cannot load adapters through vLLM's endpoints, so adapter costs are measured on vLLM itself
(docs/serving.md) and by bench/serve_throughput.py for the other backends. Prints a table, then
one JSON line.

    .venv/bin/python bench/serve_http.py [--tokens 128] [--threads 2] [--parallel 8] [--poll 50]

On a machine whose cores are busy with other work, use ``--threads 1`` (or ``--poll 0``): llama.cpp's
threads wait for each other at every step and a busy neighbour stalls them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support, from the repo root
from serve_throughput import QUESTIONS, one

SYSTEM = "You are the assistant of Kickturn Skate Supply. Answer briefly."


def messages(i: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]


async def server_stream(url: str, i: int, tokens: int, bias: dict[str, float]) -> dict[str, float]:
    """One stream read straight from the server (what ``one`` measures for an engine)."""
    import httpx

    body = {
        "messages": messages(i),
        "max_tokens": tokens,
        "temperature": 0,
        "logit_bias": bias,
        "stream": True,
    }
    start = time.perf_counter()
    first = last = 0.0
    async with (
        httpx.AsyncClient(timeout=600) as client,
        client.stream("POST", url + "/v1/chat/completions", json=body) as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("data: {") and '"content":"' in line:
                last = time.perf_counter()
                first = first or last
    return {
        "tokens": tokens,
        "ttft": first - start,
        "seconds": last - start,
        "decode_tps": (tokens - 1) / (last - first),
    }


async def scenario(name: str, runs: list[Any]) -> dict[str, Any]:
    start = time.perf_counter()
    done = await asyncio.gather(*runs)
    wall = time.perf_counter() - start
    return {
        "scenario": name,
        "streams": len(done),
        "tok_s": round(sum(r["tokens"] for r in done) / wall, 1),
        "ttft_ms": round(1000 * statistics.median(r["ttft"] for r in done), 1),
        "decode_tok_s_per_stream": round(statistics.median(r["decode_tps"] for r in done), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument(
        "--poll", type=int, default=50, help="llama.cpp busy-wait level (0: sleep; 50: its default)"
    )
    args = parser.parse_args()

    import httpx
    from tests.support.llama_server import BUNDLED, bundled_gguf, llama_server

    from afinar.inference.openai_http import OpenAIHTTPEngine
    from afinar.inference.types import GenerationRequest, SamplingParams

    with llama_server(
        bundled_gguf(),
        context=512 * args.parallel,
        parallel=args.parallel,
        threads=args.threads,
        poll=args.poll,
        alias=BUNDLED,
    ) as url:
        eos = httpx.post(url + "/tokenize", json={"content": "<|im_end|>", "parse_special": True}).json()[
            "tokens"
        ]
        server_bias = {str(t): -100.0 for t in eos}
        client_bias = {int(t): -100.0 for t in eos}
        engine = OpenAIHTTPEngine(url)

        def ask(i: int) -> GenerationRequest:
            params = SamplingParams(max_tokens=args.tokens, temperature=0.0, logit_bias=client_bias)
            return GenerationRequest(base_path=Path("/models") / BUNDLED, messages=messages(i), params=params)

        async def run() -> list[dict[str, Any]]:
            await scenario("warmup", [server_stream(url, 0, 8, server_bias)])
            return [
                await scenario("server_single", [server_stream(url, 0, args.tokens, server_bias)]),
                await scenario("client_single", [one(engine, ask(0))]),
                await scenario("client_8", [one(engine, ask(i)) for i in range(8)]),
            ]

        rows = asyncio.run(run())
        engine.close()
    print(f"{'scenario':16} {'streams':>7} {'tok/s':>8} {'TTFT ms':>8} {'decode/stream':>14}")
    for r in rows:
        cells = (r["scenario"], r["streams"], r["tok_s"], r["ttft_ms"], r["decode_tok_s_per_stream"])
        print("{:16} {:>7} {:>8} {:>8} {:>14}".format(*cells))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(
        json.dumps(
            {
                "bench": "serve_http",
                "tokens": args.tokens,
                "threads": args.threads,
                "poll": args.poll,
                "cpu": platform.processor() or platform.machine(),
                "load1": load,
                "rows": rows,
            }
        )
    )


if __name__ == "__main__":
    main()

"""llama.cpp's own servers (the ``xllamacpp`` wheel, no Afinar code) on the bundled model's
GGUF: the measurements behind the lane policy of the llama.cpp backend
(``inference/llamacpp_pool.py``, docs/serving-llamacpp.md).

- ``batch``   one server, 1 and 2 threads: aggregate tok/s of 1, 2, 4, 8 concurrent requests
              of the base (does batching pay on this CPU?)
- ``mixed``   8 requests over 4 adapters (2 each) on one-thread servers: 4 servers of 2
              requests (one per adapter) and 8 servers of 1: the ceiling for the backend's
              ``concurrent_8x4`` row
- ``second``  decode of a 2-thread server alone, then beside an idle second 2-thread server in
              the same process (run it once plainly and once with ``GOMP_SPINCOUNT=1000
              OMP_WAIT_POLICY=active``: OpenMP's throttled spin)
- ``start``   seconds to start a server (fitting to memory on and off, 0 and 4 adapters)

Greedy, end of text ignored, 128 tokens per request, the prompt of ``serve_backends.py``'s
length. It uses the GGUF and adapters ``serve_backends.py`` made (run that once first). Prints
one line per measurement.

    .venv/bin/python bench/llamacpp_servers.py batch|mixed|second|start [--workdir .afinar/bench]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

TOKENS = 128
PROMPT = list(range(1000, 1039))  # 39 token ids, as serve_backends.py's prompt


def start(gguf: Path, threads: int, parallel: int, loras: list[Path], fit: bool = False) -> Any:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.n_parallel = parallel
    params.n_ctx = 2048 * parallel
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
    params.cache_prompt = False
    params.verbosity = -1
    params.warmup = False
    params.fit_params = fit
    params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(p), 0.0) for p in loras]
    return xllamacpp.Server(params)


def body(adapter: int | None = None, adapters: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {"prompt": PROMPT, "max_tokens": TOKENS, "temperature": 0, "ignore_eos": True}
    out["cache_prompt"] = False
    if adapters:
        out["lora"] = [{"id": i, "scale": 1.0 if i == adapter else 0.0} for i in range(adapters)]
    return out


def burst(jobs: list[tuple[Any, dict[str, Any]]]) -> float:
    """Aggregate tok/s of ``jobs`` (server, body) run at once."""
    done: list[int] = []

    def run(server: Any, request: dict[str, Any]) -> None:
        done.append(int(server.handle_completions(request)["usage"]["completion_tokens"]))

    threads = [threading.Thread(target=run, args=job) for job in jobs]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - began)


def decode(server: Any) -> float:
    """The server's own decode tok/s for one request: the median of 3."""
    return statistics.median(
        server.handle_completions(body())["timings"]["predicted_per_second"] for _ in range(3)
    )


def files(workdir: Path) -> tuple[Path, list[Path]]:
    from afinar.inference.gguf import adapter_gguf

    [gguf] = sorted((workdir / "models" / "gguf").glob("*.q8_0.gguf"))
    model_dir = workdir / "models" / "smollm2-135m-instruct"
    out = Path(tempfile.mkdtemp(prefix="llamacpp-servers-"))
    loras = [
        adapter_gguf(adapter, model_dir, out / f"{adapter.name}.gguf")
        for adapter in sorted((workdir / "adapters").glob("lora-r16-*"))[:4]
    ]
    return gguf, loras


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["batch", "mixed", "second", "start"])
    parser.add_argument("--workdir", type=Path, default=Path(".afinar/bench"))
    args = parser.parse_args()
    gguf, loras = files(args.workdir)
    waits = {k: os.environ.get(k, "-") for k in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    print(f"cpus={os.cpu_count()} {gguf.name} OpenMP {waits}")
    if args.what == "batch":
        for threads in (1, 2):
            server = start(gguf, threads, 8, [])
            burst([(server, body())])  # warm-up
            rates = {n: round(burst([(server, body())] * n)) for n in (1, 2, 4, 8)}
            print(f"one server, {threads} thread(s): aggregate tok/s by concurrent requests {rates}")
            del server
    elif args.what == "mixed":
        for count, per in ((4, 2), (8, 1)):
            servers = [start(gguf, 1, 2, loras) for _ in range(count)]
            for server in servers:
                burst([(server, body(0, len(loras)))])
            jobs = [(servers[i % count], body(i % 4, len(loras))) for i in range(8)]
            rate = burst(jobs)
            print(f"8 requests over 4 adapters on {count} one-thread servers ({per} each): {rate:.0f} tok/s")
            del servers
    elif args.what == "second":
        first = start(gguf, 2, 2, [])
        alone = decode(first)
        second = start(gguf, 2, 2, [])
        beside = decode(first)
        print(f"2-thread server decode: alone {alone:.0f} tok/s, beside an idle second one {beside:.0f}")
        print(f"  the second one's own decode: {decode(second):.0f}")
    else:
        for fit in (True, False):
            for adapters in (0, 4):
                began = time.perf_counter()
                server = start(gguf, 1, 2, loras[:adapters], fit=fit)
                print(f"start, fit={fit}, {adapters} adapters: {time.perf_counter() - began:.2f} s")
                del server


if __name__ == "__main__":
    main()

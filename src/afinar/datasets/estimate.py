"""A token and time estimate for a job, before any compute is spent (no money: billing prices it).

``billable_tokens`` follows the OpenAI rule (contract §3.5, §7): the tokens of every example after
truncation to the context length, times the number of epochs. Training processes every token of
the (truncated) sequence, not only the trained ones, so the time estimate divides the same number
by the training throughput: the one earlier jobs measured on this base (services/throughput.py),
else the catalogue's constant; ``speed_source`` says which.

``training_memory_bytes`` is the memory the base and the adapter need to train in the job's
``quantization`` mode (:func:`training_memory`): the frozen weights at 2 bytes each (bf16, as on a
GPU) or, with ``nf4`` (QLoRA), the decoder's linear weights at about 0.52 bytes each, plus the LoRA
weights, their gradients and AdamW's two moments in fp32 (16 bytes per LoRA parameter). Activations
depend on the batch and are not included; a CPU worker training in fp32 holds unquantised weights
at 4 bytes each.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from afinar.datasets.hyperparameters import ResolvedHyperparameters
from afinar.datasets.report import ValidationReport


@dataclass(frozen=True)
class Estimate:
    n_examples: int  # examples counted (those without errors)
    total_tokens: int  # one epoch, before truncation
    trained_tokens: int  # one epoch, assistant tokens with weight 1, after truncation
    billable_tokens: int  # billable_tokens_per_epoch × n_epochs
    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float
    n_steps: int  # optimizer steps: ceil(n_examples / batch_size) × n_epochs
    estimated_seconds: float
    train_tokens_per_second: float  # the speed assumed
    speed_source: str  # "measured" (by earlier jobs on this base) or "catalogue" (its constant)
    quantization: str = "none"  # the job's mode: "none" (bf16 weights) or "nf4" (QLoRA)
    training_memory_bytes: int | None = None  # weights + adapter + optimizer state; None: unknown

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate(
    report: ValidationReport,
    hyper: ResolvedHyperparameters,
    *,
    train_tokens_per_second: float,
    speed_source: str = "catalogue",
    quantization: str = "none",
    training_memory_bytes: int | None = None,
) -> Estimate:
    """Estimate a job from a validation report made with a tokenizer.

    Raises ``ValueError`` when the report has no token counts or the throughput is not positive.
    """
    if not train_tokens_per_second > 0 or not math.isfinite(train_tokens_per_second):
        raise ValueError("train_tokens_per_second must be a positive number")
    if (
        report.n_tokenized is None
        or report.total_tokens is None
        or report.trained_tokens is None
        or report.billable_tokens_per_epoch is None
    ):
        raise ValueError("the validation report has no token counts (validate with a tokenizer)")
    billable = report.billable_tokens_per_epoch * hyper.n_epochs
    steps_per_epoch = math.ceil(report.n_tokenized / hyper.batch_size) if report.n_tokenized else 0
    return Estimate(
        n_examples=report.n_tokenized,
        total_tokens=report.total_tokens,
        trained_tokens=report.trained_tokens,
        billable_tokens=billable,
        n_epochs=hyper.n_epochs,
        batch_size=hyper.batch_size,
        learning_rate_multiplier=hyper.learning_rate_multiplier,
        n_steps=steps_per_epoch * hyper.n_epochs,
        estimated_seconds=billable / train_tokens_per_second,
        train_tokens_per_second=train_tokens_per_second,
        speed_source=speed_source,
        quantization=quantization,
        training_memory_bytes=training_memory_bytes,
    )


BF16_BYTES = 2
LORA_BYTES_PER_PARAM = 4 + 4 + 8  # fp32 weight, its gradient, AdamW's two moments


def weight_shapes(model_dir: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape in a model directory's safetensors files, from their headers only (an
    8-byte little-endian length, then a JSON header): no weights are read."""
    shapes: dict[str, tuple[int, ...]] = {}
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        for name, info in header.items():
            if name != "__metadata__":
                shapes[name] = tuple(int(d) for d in info["shape"])
    return shapes


def _is_decoder_linear(name: str, shape: tuple[int, ...], block: int) -> bool:
    """A linear weight inside a decoder layer, as QLoRA quantises it (not the embeddings, the LM head
    or the norms; whole quantisation blocks only)."""
    return (
        len(shape) == 2
        and name.endswith(".weight")
        and ".layers." in f".{name}"
        and math.prod(shape) % block == 0
    )


def training_memory(
    shapes: Mapping[str, tuple[int, ...]],
    targets: Iterable[str],
    *,
    lora_r: int,
    quantized_bytes_per_param: float | None,
    block: int = 64,
) -> int:
    """Bytes to hold the frozen base and train LoRA of rank ``lora_r`` on ``targets``: weights at 2
    bytes (bf16), the decoder linears at ``quantized_bytes_per_param`` when quantised (None: not),
    and 16 bytes per LoRA parameter (fp32 weight, gradient and AdamW state). Activations excluded."""
    wanted = tuple(f".{t}.weight" for t in targets)
    weights = 0.0
    lora = 0
    for name, shape in shapes.items():
        n = math.prod(shape)
        if quantized_bytes_per_param is not None and _is_decoder_linear(name, shape, block):
            weights += n * quantized_bytes_per_param
        else:
            weights += n * BF16_BYTES
        if len(shape) == 2 and name.endswith(wanted):
            lora += lora_r * (shape[0] + shape[1])
    return int(weights) + lora * LORA_BYTES_PER_PARAM

"""Throughput of a training step: tokens/s, the FLOPs a trained token costs, and MFU.

FLOPs per trained token (``../shared/reference/cpu-performance.md``, "Physical limit"): a matmul
weight of N parameters costs 2N forward; backward costs 2N for the activation gradient and 2N more
for the weight gradient when the weight is trained. So

- LoRA: ``4·N_frozen + 6·N_lora`` (frozen weights need activation gradients only),
- full fine-tuning: ``6·N``,

where N counts the weights of the linear layers (the LM head included, tied or not; embeddings
and norms excluded), plus causal attention (QKᵀ and PV), ``6·layers·width·L·(L+1)`` per sequence
of L tokens (forward ``2·layers·width·L·(L+1)``, backward twice that). Recomputation under
activation checkpointing is not counted (the usual MFU convention), nor is the cheaper LM head
at label positions only: one definition for every variant.

MFU = FLOPs per second ÷ the device's peak dense bf16 FLOP/s (``PEAK_BF16_FLOPS`` by GPU name, or
the operator's ``AFINAR_TRAIN_PEAK_FLOPS``); None where no peak is known (a CPU, by default).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

# Peak dense bf16 tensor FLOP/s per GPU (vendor data sheets, without sparsity). Matched against
# ``torch.cuda.get_device_name()`` in this order: a more specific name comes first.
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("B200", 2250e12),
    ("GH200", 989e12),
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),  # SXM and NVL
    ("H800", 989e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A10G", 70e12),
    ("A10", 125e12),
    ("RTX 4090", 165e12),
)


def peak_flops_for(device_name: str) -> float | None:
    """The peak dense bf16 FLOP/s of a GPU by its name; None for one not in the table."""
    for needle, peak in PEAK_BF16_FLOPS:
        if needle.lower() in device_name.lower():
            return peak
    return None


def dense_flops_per_token(n_frozen: int, n_trained: int) -> int:
    """FLOPs of one trained token through the linear layers: ``4·N_frozen + 6·N_trained``
    (LoRA: N_trained is the adapter; full fine-tuning: N_frozen is 0, so ``6·N``)."""
    return 4 * n_frozen + 6 * n_trained


def attention_flops(lengths: Sequence[int], n_layers: int, width: int) -> int:
    """Causal attention (QKᵀ and PV) of sequences of ``lengths`` tokens, forward and backward."""
    return sum(6 * n_layers * width * n * (n + 1) for n in lengths)


def mfu(flops_per_second: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation, or None without a known positive peak."""
    if peak is None or not peak > 0 or not math.isfinite(flops_per_second):
        return None
    return flops_per_second / peak


@dataclass(frozen=True)
class StepCost:
    """What a model's training step costs in FLOPs (counted once from the model)."""

    n_frozen: int  # weights of frozen linear layers
    n_trained: int  # weights of trained linear layers (the LoRA adapter, or every linear)
    n_layers: int
    attention_width: int  # heads × head dim

    @property
    def dense_per_token(self) -> int:
        return dense_flops_per_token(self.n_frozen, self.n_trained)

    def step_flops(self, lengths: Sequence[int]) -> int:
        """FLOPs of a step over sequences of ``lengths`` (non-padding) tokens."""
        return self.dense_per_token * sum(lengths) + attention_flops(
            lengths, self.n_layers, self.attention_width
        )

    @classmethod
    def of(cls, model: Any) -> StepCost:
        """Count the linear weights of ``model`` (a PeftModel or a PreTrainedModel) by whether
        they train; the shape (in × out) counts, so a quantised weight counts like a dense one."""
        frozen = trained = 0
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                n = int(module.in_features) * int(module.out_features)
                if module.weight.requires_grad:
                    trained += n
                else:
                    frozen += n
        config = getattr(model, "config", None)
        n_layers = int(getattr(config, "num_hidden_layers", 0) or 0)
        heads = int(getattr(config, "num_attention_heads", 0) or 0)
        hidden = int(getattr(config, "hidden_size", 0) or 0)
        head_dim = getattr(config, "head_dim", None) or (hidden // heads if heads else 0)
        return cls(frozen, trained, n_layers, heads * int(head_dim))


def device_kind(device: torch.device, threads: int, mode: str = "") -> str:
    """What the speed is measured on: ``cuda:<GPU name>`` or ``cpu:<threads>``, then ``/<mode>``
    when given (``fp32``, ``bf16+compiled``, ``bf16+nf4``: the same device trains at very different
    speeds in each, so each keeps its own measured speed)."""
    if device.type == "cuda":
        kind = f"cuda:{torch.cuda.get_device_name(device)}"
    else:
        kind = f"{device.type}:{threads}"
    return f"{kind}/{mode}" if mode else kind


class StepMeter:
    """Times training steps and turns them into the step event's throughput fields."""

    def __init__(
        self, model: Any, *, threads: int, peak_override: float | None = None, mode: str = ""
    ) -> None:
        self.cost = StepCost.of(model)
        try:
            self.device = next(model.parameters()).device
        except StopIteration:
            self.device = torch.device("cpu")
        self.kind = device_kind(self.device, threads, mode)
        cuda_peak = (
            peak_flops_for(torch.cuda.get_device_name(self.device)) if self.device.type == "cuda" else None
        )
        self.peak = peak_override or cuda_peak
        self._t0 = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def start(self) -> None:
        self._sync()
        self._t0 = time.perf_counter()

    def stop(self, lengths: Sequence[int]) -> dict[str, Any]:
        """The fields of a step of sequences of ``lengths`` tokens, since ``start``."""
        self._sync()
        seconds = max(time.perf_counter() - self._t0, 1e-9)
        return self.fields(lengths, seconds)

    def fields(self, lengths: Sequence[int], seconds: float) -> dict[str, Any]:
        tokens = sum(lengths)
        return {
            "step_seconds": seconds,
            "tokens_per_second": tokens / seconds,
            "mfu": mfu(self.cost.step_flops(lengths) / seconds, self.peak),
            "device_kind": self.kind,
        }

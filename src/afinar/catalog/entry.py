"""A catalogue entry: one base model, as ``models.toml`` (or the operator's file) describes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from afinar.domain.hardware import GIB, NF4, Requirement

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class BaseModelEntry:
    id: str
    source: str  # bundled | local | hub
    path: str | None = None  # local directory, or hub id
    package: str | None = None  # bundled: the Python package holding the GGUF
    gguf_file: str | None = None
    context_length: int = 2048
    tier: str = "mini"
    lora_target_modules: tuple[str, ...] = DEFAULT_TARGETS
    train_tokens_per_second: float = 200.0
    # What a worker needs to train this base (docs/architecture.md, "Devices"); the defaults run
    # anywhere, the CPU included. ``min_gpu_memory_gb`` (GiB, per GPU) implies a GPU.
    # ``min_gpu_memory_gb_nf4``: the same for a QLoRA job (``quantization: "nf4"``); absent, such a
    # job needs what ``min_gpu_memory_gb`` says. Never more than it: a worker that trains the base
    # in bf16 trains it in NF4 too.
    requires_gpu: bool = False
    min_gpu_memory_gb: float = 0.0
    min_gpu_memory_gb_nf4: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        nf4 = self.min_gpu_memory_gb_nf4
        if nf4 is not None and not 0 <= nf4 <= max(0.0, self.min_gpu_memory_gb):
            raise ValueError(
                f"catalogue entry {self.id!r}: min_gpu_memory_gb_nf4 ({nf4}) must be between 0 and "
                f"min_gpu_memory_gb ({self.min_gpu_memory_gb}): QLoRA never needs more memory than bf16"
            )

    def requirement(self, quantization: str | None = None) -> Requirement:
        """What a worker must have to train a job on this base in ``quantization`` mode (``"nf4"``:
        QLoRA; None or anything else: the base's own precision). The base's need of a GPU is the
        same in every mode; only the memory differs."""
        memory = int(self.min_gpu_memory_gb * GIB)
        gpu = self.requires_gpu or memory > 0
        if quantization == NF4 and self.min_gpu_memory_gb_nf4 is not None:
            memory = int(self.min_gpu_memory_gb_nf4 * GIB)
        return Requirement(gpu=gpu, min_gpu_memory_bytes=max(0, memory))

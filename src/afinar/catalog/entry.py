"""A catalogue entry: one base model, as ``models.toml`` (or the operator's file) describes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from afinar.domain.hardware import GIB, Requirement

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
    requires_gpu: bool = False
    min_gpu_memory_gb: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def requirement(self) -> Requirement:
        """What a worker must have to train a job on this base."""
        memory = int(self.min_gpu_memory_gb * GIB)
        return Requirement(gpu=self.requires_gpu or memory > 0, min_gpu_memory_bytes=max(0, memory))

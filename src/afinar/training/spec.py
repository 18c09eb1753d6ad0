"""TrainSpec: everything one training child process needs, read from a JSON file.

The worker writes it; ``python -m afinar.training SPEC.json`` reads it. No database, no HTTP.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

LLAMA_PROJECTIONS: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)

DEFAULT_BASE_LR: dict[str, float] = {"lora": 2e-4, "full": 2e-5}


class TrainSpec(BaseModel):
    """One fine-tuning run. Unknown fields are rejected so a typo never trains silently."""

    model_config = ConfigDict(extra="forbid")

    base_model_path: str
    train_file: str
    valid_file: str | None = None
    # Set when the files are blobs encrypted at rest (afinar.crypto.stream) under these names; the
    # child then reads the organisation's data key from the first line of its stdin (base64), so
    # no plaintext copy of the training data is ever written to disk.
    train_blob_key: str | None = None
    valid_blob_key: str | None = None
    output_dir: str
    method: Literal["lora", "full"] = "lora"
    # What is learnt (the job's ``method.type``): "supervised" (next-token loss on the assistant
    # answers of chat lines) or "dpo" (preference lines, ``dpo.py``; LoRA only: the reference model
    # is the same model with the adapter switched off). ``beta``: DPO's temperature.
    objective: Literal["supervised", "dpo"] = "supervised"
    beta: float = Field(default=0.1, gt=0.0, le=2.0)
    n_epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    learning_rate_multiplier: float = Field(gt=0)
    base_learning_rate: float | None = Field(default=None, gt=0)
    seed: int = Field(ge=0)
    max_length: int = Field(ge=2)
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    lora_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    lora_target_modules: list[str] = Field(default_factory=lambda: list(LLAMA_PROJECTIONS))
    checkpoint_every_steps: int = Field(default=0, ge=0)
    eval_every_steps: int = Field(default=0, ge=0)
    resume_from: str | None = None
    threads: int = Field(default=0, ge=0)
    step_delay_seconds: float = Field(default=0.0, ge=0.0)
    # Peak FLOP/s of the device for the step events' MFU (training/flops.py); None: the GPU's own
    # from the table (a CPU then reports no MFU).
    peak_flops: float | None = Field(default=None, gt=0)
    # "varlen": a batch is one packed row, attention runs per sequence (faster on CPU, exact);
    # "padded": [batch, longest] with an attention mask. Models whose attention cannot be swapped
    # fall back to "padded" on their own.
    batch_layout: Literal["varlen", "padded"] = "varlen"
    # Where and how precisely to train (training/placement.py): "auto" is CUDA when torch sees a GPU,
    # else the CPU; bf16 on a GPU that supports it, else fp32. A forced choice that this machine
    # cannot run fails the run; it never falls back. Activation checkpointing: "auto" turns it on
    # when the largest batch would not fit the free GPU memory (never on the CPU).
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    gradient_checkpointing: Literal["auto", "on", "off"] = "auto"
    # torch.compile of every decoder layer (training/fast.py): "auto" compiles a bf16 run on the CPU
    # when the job trains enough tokens to amortise compiling; "on"/"off" force it.
    compile: Literal["auto", "on", "off"] = "auto"
    # "nf4": QLoRA, the frozen base's decoder linears quantised to 4-bit NormalFloat (training/quant.py);
    # LoRA only. The saved adapter is the same PEFT adapter as without it.
    quantization: Literal["none", "nf4"] = "none"
    # With several processes (training/sharding.py): "auto"/"fsdp" shard a full fine-tune's weights,
    # gradients and optimizer state over the ranks (FSDP); "ddp" replicates them. LoRA is always DDP.
    sharding: Literal["auto", "fsdp", "ddp"] = "auto"

    @model_validator(mode="after")
    def _check(self) -> TrainSpec:
        if self.method == "lora" and not self.lora_target_modules:
            raise ValueError("lora_target_modules must name at least one module")
        if self.quantization != "none" and self.method != "lora":
            raise ValueError("quantization applies to LoRA only (method 'lora')")
        if self.objective == "dpo" and self.method != "lora":
            raise ValueError(
                "DPO trains LoRA only (method 'lora'): its reference is the base without the adapter"
            )
        return self

    @property
    def learning_rate(self) -> float:
        base = (
            self.base_learning_rate if self.base_learning_rate is not None else DEFAULT_BASE_LR[self.method]
        )
        return base * self.learning_rate_multiplier

    @property
    def n_threads(self) -> int:
        return self.threads or os.cpu_count() or 1

    @property
    def checkpoints_dir(self) -> Path:
        return Path(self.output_dir) / "checkpoints"

    @property
    def final_dir(self) -> Path:
        return Path(self.output_dir) / "final"

    @classmethod
    def from_file(cls, path: str | Path) -> TrainSpec:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))

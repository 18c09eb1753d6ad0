"""Where a training child runs and in what precision: the spec's choices resolved on this machine.

``auto`` picks CUDA when torch sees a GPU, else the CPU; in precision, bf16 on a GPU that supports it,
else fp32 (on the CPU too: today's exact path). A forced choice this machine cannot run raises
``PlacementError`` (the child reports it as an ``error`` event); nothing falls back silently.

bf16 means: frozen base weights stored in bf16, the forward pass under ``torch.autocast(bf16)``, and
the trainable LoRA weights, their gradients and AdamW's state in fp32. The LoRA branch is computed and
added to the base output in fp32 (``keep_lora_in_fp32``): in eager autocast the small LoRA delta would
otherwise be added in bf16 and rounded away, and the loss drifts from the fp32 curve
(``../shared/reference/cpu-performance.md``).
"""

from __future__ import annotations

import contextlib
import functools
import resource
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

DeviceChoice = Literal["auto", "cpu", "cuda"]
PrecisionChoice = Literal["auto", "fp32", "bf16"]
CheckpointingChoice = Literal["auto", "on", "off"]
Precision = Literal["fp32", "bf16"]

# CPU features that run bf16 matmuls natively: x86 AVX512-BF16 and AMX-BF16, Arm's FEAT_BF16.
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
# Share of the free GPU memory the estimate may fill before activation checkpointing is turned on.
MEMORY_HEADROOM = 0.85


class PlacementError(ValueError):
    """A forced device or precision that this machine cannot run."""


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags (x86 ``flags``, Arm ``Features``); empty where they cannot be read."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return frozenset(flags)


def cpu_supports_bf16(flags: frozenset[str] | None = None) -> bool:
    return bool((cpu_flags() if flags is None else flags) & CPU_BF16_FLAGS)


@dataclass(frozen=True)
class Placement:
    """The resolved device and precision of one run."""

    device: torch.device
    name: str  # "cpu", "cuda:0 (NVIDIA H200)"
    precision: Precision

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the frozen base weights."""
        return torch.bfloat16 if self.precision == "bf16" else torch.float32

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self) -> AbstractContextManager[Any]:
        """The forward pass's context: bf16 autocast, or nothing at all in fp32 (the exact path)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def reset_peak_memory(self) -> None:
        if self.is_cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_memory_bytes(self) -> int:
        """CUDA: the most memory torch held on the device; CPU: the process's peak resident set."""
        if self.is_cuda:
            return int(torch.cuda.max_memory_allocated(self.device))
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB


CPU_FP32 = Placement(torch.device("cpu"), "cpu", "fp32")


def resolve_placement(device: DeviceChoice, precision: PrecisionChoice) -> Placement:
    """The spec's ``device``/``precision`` on this machine; ``PlacementError`` where a forced one
    cannot run."""
    if device == "cuda" and not torch.cuda.is_available():
        raise PlacementError(
            "training device 'cuda' was requested (AFINAR_TRAIN_DEVICE=cuda) but this worker has no "
            "usable CUDA device (torch.cuda.is_available() is false)"
        )
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        index = torch.cuda.current_device()
        name = f"cuda:{index} ({torch.cuda.get_device_name(index)})"
        bf16_ok = bool(torch.cuda.is_bf16_supported())
        if precision == "bf16" and not bf16_ok:
            raise PlacementError(
                f"training precision 'bf16' was requested (AFINAR_TRAIN_PRECISION=bf16) but {name} "
                "does not support bf16"
            )
        chosen: Precision = "bf16" if precision == "bf16" or (precision == "auto" and bf16_ok) else "fp32"
        return Placement(torch.device("cuda", index), name, chosen)
    if precision == "bf16" and not cpu_supports_bf16():
        raise PlacementError(
            "training precision 'bf16' was requested (AFINAR_TRAIN_PRECISION=bf16) but this CPU has no "
            f"native bf16 support (capability {torch.backends.cpu.get_cpu_capability()}; none of the "
            f"flags {', '.join(sorted(CPU_BF16_FLAGS))}); use fp32 or auto"
        )
    return Placement(torch.device("cpu"), "cpu", "bf16" if precision == "bf16" else "fp32")


def _lora_forward_fp32(
    layer: Any, x: torch.Tensor, *args: Any, _base_dtype_out: bool = False, **kwargs: Any
) -> torch.Tensor:
    """A peft LoRA ``Linear`` whose frozen base runs as it is (bf16 under autocast) and whose LoRA
    branch runs, and is added to the base output, in fp32. The sum goes on in fp32, or, with
    ``_base_dtype_out`` (compiled layers, ``fast.py``), in the base output's dtype."""
    result: torch.Tensor = layer.base_layer(x, *args, **kwargs)
    if layer.disable_adapters or layer.merged:
        return result
    base_dtype = result.dtype
    with torch.autocast(x.device.type, enabled=False):
        x32 = x.float()
        for name in layer.active_adapters:
            if name not in layer.lora_A:
                continue
            delta = layer.lora_B[name](layer.lora_A[name](layer.lora_dropout[name](x32)))
            result = result.float() + delta * layer.scaling[name]
    return result.to(base_dtype) if _base_dtype_out else result


@functools.cache
def _fp32_lora_class(lora_class: type, base_dtype_out: bool) -> type:
    """A subclass of peft's LoRA ``Linear`` whose forward is ``_lora_forward_fp32``. Swapping the class
    (not a forward per instance) gives every layer the same forward, so torch.compile guards on the
    type once instead of compiling again for each layer (``fast.py``)."""

    def forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return _lora_forward_fp32(self, x, *args, _base_dtype_out=base_dtype_out, **kwargs)

    name = ("Fp32SumBase" if base_dtype_out else "Fp32Sum") + lora_class.__name__
    return type(name, (lora_class,), {"forward": forward, "_afinar_lora_class": lora_class})


def keep_lora_in_fp32(model: torch.nn.Module, *, base_dtype_out: bool = False) -> int:
    """Trainable parameters to fp32, and every LoRA ``Linear``'s branch computed and added in fp32
    (the sum handed on in the base output's dtype with ``base_dtype_out``); returns how many layers
    were changed."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    patched = 0
    for module in model.modules():
        if isinstance(module, LoraLinear):
            lora_class = getattr(type(module), "_afinar_lora_class", type(module))
            module.__class__ = _fp32_lora_class(lora_class, base_dtype_out)
            patched += 1
    return patched


def activation_bytes(config: Any, tokens: int, precision: Precision, lora: bool) -> int:
    """A rough upper estimate of what one training step keeps for backward without checkpointing.

    Per token and decoder layer: the saved intermediates of attention and the MLP
    (≈ 16·hidden + 5·intermediate values in the compute dtype), plus, in bf16 with LoRA, the fp32
    inputs each LoRA branch keeps (≈ 6·hidden + intermediate); then the label-only LM head's fp32
    logits and their gradient.
    """
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    inter = int(getattr(config, "intermediate_size", 0) or 4 * hidden)
    layers = int(getattr(config, "num_hidden_layers", 0) or 0)
    vocab = int(getattr(config, "vocab_size", 0) or 0)
    elem = 2 if precision == "bf16" else 4
    per_token_layer = (16 * hidden + 5 * inter) * elem
    if lora and precision == "bf16":
        per_token_layer += (6 * hidden + inter) * 4
    return tokens * (layers * per_token_layer + 2 * vocab * 4)


def wants_checkpointing(
    choice: CheckpointingChoice,
    placement: Placement,
    config: Any,
    tokens: int,
    n_trainable: int,
    lora: bool,
) -> bool:
    """``on``/``off`` as forced; ``auto``: on CUDA, when the estimated activations and optimizer state
    of the largest batch would not fit the free device memory (the weights are already there); on
    the CPU, off."""
    if choice != "auto":
        return choice == "on"
    if not placement.is_cuda:
        return False
    free, _total = torch.cuda.mem_get_info(placement.device)
    optimizer_state = n_trainable * (4 + 8)  # fp32 gradients + AdamW's two moments
    need = activation_bytes(config, tokens, placement.precision, lora) + optimizer_state
    return need > MEMORY_HEADROOM * free

"""QLoRA: the frozen base's decoder linears as 4-bit NormalFloat (NF4) weights, LoRA on top.

A job with ``quantization: "nf4"`` loads its base as usual (fp32, or bf16 when the placement is
bf16), attaches LoRA, and then replaces the weight of every frozen ``nn.Linear`` inside the decoder
(the attention and MLP projections, the LoRA-wrapped ones included) with torchao's ``NF4Tensor``:
blocks of 64 values share one absmax scale, and the scales themselves are quantised to 8 bits in
blocks of 256 (QLoRA's double quantisation), about 0.52 bytes per weight instead of 2 (bf16) or 4
(fp32). The embeddings, the LM head and the norms stay as they were. ``NF4Tensor`` handles
``F.linear`` by dequantising the block-wise weight to the input's dtype for the matmul (forward and
backward), so peft's ``lora.Linear`` calls its base layer unchanged; the LoRA weights, their
gradients and AdamW's state stay fp32 as in every mode.

The adapter a QLoRA run saves is the ordinary PEFT adapter (it never holds quantised weights); serving
applies it to the full-precision base, as the QLoRA paper and peft do. torchao's NF4 runs on CPUs and
GPUs alike. Layers whose size is not a multiple of 64 values stay unquantised; a layer with fewer than
256 scale blocks (tiny test models only) uses the largest smaller power-of-two scale block that divides
its block count.

This module imports torch and torchao only inside its functions: the API process asks
:func:`unavailable_reason` without loading either.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

Quantization = Literal["none", "nf4"]
QUANTIZATIONS: tuple[str, ...] = ("none", "nf4")

BLOCK_SIZE = 64  # values per absmax block (QLoRA)
SCALER_BLOCK_SIZE = 256  # absmax scales per second-level block (QLoRA's double quantisation)
# Bytes per quantised weight: 4 bits, one 8-bit scale per 64 values, one fp32 factor per 256 scales.
NF4_BYTES_PER_PARAM = 0.5 + 1 / BLOCK_SIZE + 4 / (BLOCK_SIZE * SCALER_BLOCK_SIZE)


class QuantizationError(RuntimeError):
    """The run asked for a quantisation this machine cannot do (torchao missing or broken)."""


def unavailable_reason() -> str | None:
    """Why NF4 cannot be used in this process (torchao is not installed), or None when it can.

    Only looks the package up (no import): cheap enough for the API process, which has no use for
    torch itself. The training child imports it for real (:func:`quantize_base`) and fails the job
    with a clear message if that import breaks.
    """
    try:
        found = importlib.util.find_spec("torchao") is not None
    except (ImportError, ValueError):  # a parent package missing, or a module set to None
        found = False
    if found:
        return None
    return "the 'torchao' package is not installed"


def _nf4() -> tuple[type, object]:
    """(NF4Tensor, to_nf4), importing torchao quietly: on a torch it was not built against it logs
    warnings about its optional C++ kernels, which NF4 does not use."""
    quiet = logging.getLogger("torchao")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        from torchao.quantization import NF4Tensor, to_nf4
    except Exception as exc:  # ImportError, or torchao failing to initialise against this torch
        raise QuantizationError(f"NF4 quantisation needs torchao, which cannot be imported: {exc}") from exc
    finally:
        quiet.setLevel(level)
    return NF4Tensor, to_nf4


def scaler_block_size(numel: int) -> int | None:
    """The scale block for a weight of ``numel`` values: 256, or for small layers the largest power
    of two dividing the block count; None when the weight cannot be quantised (not whole blocks)."""
    if numel <= 0 or numel % BLOCK_SIZE:
        return None
    n_blocks = numel // BLOCK_SIZE
    return math.gcd(n_blocks, SCALER_BLOCK_SIZE)


def is_nf4(weight: object) -> bool:
    """Whether ``weight`` is a torchao NF4 tensor (False when torchao is absent)."""
    if unavailable_reason() is not None:
        return False
    nf4_tensor, _ = _nf4()
    return isinstance(weight, nf4_tensor)


def quantize_base(decoder: torch.nn.Module, device: torch.device | None = None) -> int:
    """Replace the weight of every frozen ``nn.Linear`` in ``decoder`` with an NF4 tensor, quantised
    on ``device`` (the run's, so a large base never sits unquantised on the GPU); returns how many
    layers were quantised. Trainable linears (LoRA's A and B) are left alone."""
    import torch

    _nf4_tensor, to_nf4 = _nf4()
    quantised = 0
    for module in decoder.modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        weight = module.weight
        if weight.requires_grad or weight.dim() != 2:
            continue
        scaler = scaler_block_size(weight.numel())
        if scaler is None:
            continue
        data = weight.detach()
        if device is not None:
            data = data.to(device)
        nf4 = to_nf4(data.contiguous(), BLOCK_SIZE, scaler)  # type: ignore[operator]
        module.weight = torch.nn.Parameter(nf4, requires_grad=False)
        quantised += 1
    if quantised == 0:
        raise QuantizationError("NF4 quantisation found no frozen linear layer to quantise")
    return quantised

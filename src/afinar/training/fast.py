"""The fast path of a bf16 LoRA run: each decoder layer compiled by ``torch.compile``, chosen per job.

With ``precision`` bf16 the frozen base weights are stored in bf16 while the LoRA A/B weights, their
gradients and AdamW's state stay fp32, and every LoRA branch is computed and added to the base
output in fp32 (``placement.keep_lora_in_fp32``). In eager mode that is only ~1.15x faster than
exact fp32 on a CPU with native bf16 (AVX512-BF16), because the many small element-wise ops
between the matmuls do not speed up. Compiling each decoder layer with inductor fuses them, and
takes the CPU path to ~3x TRL's ``SFTTrainer``
(``../shared/reference/cpu-performance.md``; ``bench/train_vs_trl.py`` measures it).

Compiling costs time in the first step (and once more in the first evaluation, a no-grad graph),
so ``compile`` is chosen per job: ``on``, ``off``, or ``auto``, which compiles a bf16 run on the
CPU only when the tokens the job still has to train save more time than compiling costs
(``min_tokens_to_compile``). Layers are compiled regionally, one graph reused by every layer, with
dynamic shapes, so batches of different lengths do not recompile. Compilation wraps each layer in
place: parameter names, checkpoints and the saved adapter are the same as without it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import torch

from afinar.training.model import TrainModel
from afinar.training.placement import Placement, PlacementError, cpu_supports_bf16, keep_lora_in_fp32
from afinar.training.spec import TrainSpec

CompileChoice = Literal["auto", "on", "off"]

# Measured by the maintainers on the bundled 135M model (SmolLM2-135M, 30 layers) on a quiet 2-core
# Zen 4 CPU, bf16 LoRA r=16 (../shared/reference/cpu-performance.md): compiling costs ~40 s of the
# first step with a cold inductor cache (~9 s when warm), and saves about 0.7 ms per trained token
# against eager bf16 (289 -> 364 tokens/s steady). The saving grows
# with the FLOPs per token, i.e. with the model's size, while the cost of compiling one layer's
# graph hardly does.
COMPILE_SECONDS = 40.0
SAVED_SECONDS_PER_TOKEN = 1 / 289 - 1 / 364
REFERENCE_PARAMETERS = 135_000_000


def min_tokens_to_compile(n_parameters: int) -> int:
    """The trained tokens from which compiling a model of ``n_parameters`` pays for itself on the
    CPU: ~56k for the bundled 135M model (~50 steps of 1k-token batches)."""
    scale = max(n_parameters, 1) / REFERENCE_PARAMETERS
    return math.ceil(COMPILE_SECONDS / (SAVED_SECONDS_PER_TOKEN * scale))


def wants_compile(
    choice: CompileChoice,
    placement: Placement,
    tokens_to_train: int,
    n_parameters: int,
    quantized: bool = False,
) -> bool:
    """``on``/``off`` as forced; ``auto``: a bf16 run on the CPU that will train enough tokens to
    amortise compiling. Exact fp32 gains nothing in speed from it (it only trims memory); on CUDA
    and on an NF4 base the cost and gain were not measured, so ``auto`` leaves them eager."""
    if choice != "auto":
        return choice == "on"
    if placement.is_cuda or placement.precision != "bf16" or quantized:
        return False
    return tokens_to_train >= min_tokens_to_compile(n_parameters)


def checkpoint_parameters(model_dir: Path) -> int:
    """The parameters a Hugging Face checkpoint holds, read from its safetensors headers (no weights
    are loaded); 0 where there are none to read."""
    from safetensors import safe_open

    total = 0
    for file in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                total += math.prod(f.get_slice(name).get_shape())
    return total


def wants_cpu_bf16(spec: TrainSpec, placement: Placement, tokens_to_train: int, processes: int = 1) -> bool:
    """``precision: auto`` on the CPU: the fast path (bf16 base, fp32 LoRA branch, compiled layers)
    for a one-process LoRA job on a CPU with native bf16 whose tokens pay for compiling; exact fp32
    otherwise, as before. Its loss follows the fp32 curve within 1 % (``tests/training/test_fast_path.py``);
    the choice is the job's ``started`` event and its model card (``precision``, ``compiled``)."""
    if spec.precision != "auto" or placement.is_cuda or placement.precision != "fp32":
        return False
    if spec.method != "lora" or spec.objective != "supervised" or spec.quantization != "none":
        return False
    if spec.compile == "off" or processes > 1:
        return False
    if not cpu_supports_bf16():
        return False
    return tokens_to_train >= min_tokens_to_compile(checkpoint_parameters(Path(spec.base_model_path)))


def decoder_layers(backbone: torch.nn.Module) -> torch.nn.ModuleList:
    """The decoder's stack of layers (``model.layers`` in every transformers decoder Afinar trains)."""
    layers = getattr(backbone, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) == 0:
        raise PlacementError(
            f"{type(backbone).__name__} has no list of decoder layers to compile; "
            "set AFINAR_TRAIN_COMPILE=off"
        )
    return layers


def compile_layers(backbone: torch.nn.Module) -> int:
    """Compile every decoder layer in place (inductor, dynamic shapes); returns how many.

    Nothing runs until the first forward pass, which pays the compilation."""
    layers = decoder_layers(backbone)
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


def apply_compile(tm: TrainModel, spec: TrainSpec, tokens_to_train: int) -> bool:
    """Compile ``tm``'s decoder layers when ``spec.compile`` says so for this run (its placement, its
    quantisation and the tokens it still has to train); records the outcome in ``tm.compiled``.

    In a compiled bf16 LoRA run each LoRA branch is still computed and added in fp32, but the sum
    goes on in bf16, as the base output would: every layer then takes and gives bf16 hidden states
    (one graph for all of them, not one for the first layer and another for the rest), and inside
    the fused kernels inductor keeps the sum in fp32 until the next matmul or the layer's output.
    """
    n_parameters = sum(p.numel() for p in tm.model.parameters())
    tm.compiled = wants_compile(
        spec.compile, tm.placement, tokens_to_train, n_parameters, spec.quantization != "none"
    )
    if not tm.compiled:
        return False
    if tm.placement.precision == "bf16" and spec.method == "lora":
        keep_lora_in_fp32(tm.model, base_dtype_out=True)
    # The frozen embeddings give the first layer an input without gradient, the LoRA layers give
    # the others one with: marking it as the others' saves compiling a second graph for layer 0.
    decoder: Any = tm.backbone  # a transformers decoder: it has its input embeddings
    decoder.get_input_embeddings().register_forward_hook(_output_requires_grad)
    compile_layers(tm.backbone)
    return True


def _output_requires_grad(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
    if torch.is_grad_enabled() and not output.requires_grad:
        output.requires_grad_(True)

"""The model side of training: load base weights, attach LoRA, place them, and score label positions only.

Weights load in fp32 (the exact CPU path) or, for LoRA in bf16, as frozen bf16 weights with fp32 LoRA
(``placement.py``); with ``quantization: "nf4"`` (QLoRA) the frozen decoder linears then become NF4
(``quant.py``); the model then moves to the run's device.

The LM head runs only on the hidden states whose next token carries a label (gathered, then
projected), which is exact and cheaper than full logits. In the "varlen" layout a batch is one
packed row: every linear layer sees all tokens at once and attention runs per sequence from
``cu_seq_lens_q`` through a function registered in transformers' ``AttentionInterface``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from afinar.datasets.encoding import IGNORE_INDEX
from afinar.training.data import Batch, Layout
from afinar.training.placement import (
    CPU_FP32,
    Placement,
    PlacementError,
    keep_lora_in_fp32,
    wants_checkpointing,
)
from afinar.training.quant import quantize_base
from afinar.training.spec import TrainSpec

VARLEN_ATTENTION = "afinar_varlen_sdpa"
_registered = False


def _varlen_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Causal attention per packed sequence; query/key/value are [1, heads, tokens, head_dim]."""
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None:  # an unpacked call (e.g. generation): one sequence
        cu = [0, query.shape[2]]
    bounds: list[int] = cu.tolist() if torch.is_tensor(cu) else list(cu)
    outs = [
        F.scaled_dot_product_attention(
            query[:, :, s:e],
            key[:, :, s:e],
            value[:, :, s:e],
            is_causal=True,
            scale=scaling,
            dropout_p=dropout if module.training else 0.0,
            enable_gqa=query.shape[1] != key.shape[1],
        )
        for s, e in itertools.pairwise(bounds)
    ]
    return torch.cat(outs, dim=2).transpose(1, 2).contiguous(), None


def _no_mask(*args: Any, **kwargs: Any) -> None:
    return None


def register_varlen_attention() -> None:
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    # Eager even inside a compiled layer (``fast.py``): the per-sequence split reads cu_seq_lens' values.
    AttentionInterface.register(VARLEN_ATTENTION, torch.compiler.disable(_varlen_sdpa))
    ALL_MASK_ATTENTION_FUNCTIONS.register(VARLEN_ATTENTION, _no_mask)
    _registered = True


def load_tokenizer(path: str | Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def pad_token_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def load_causal_lm(
    weights_dir: str | Path, layout: Layout, dtype: torch.dtype = torch.float32
) -> tuple[Any, Layout]:
    """Weights from safetensors (fp32 unless told); falls back to the padded layout if attention cannot
    be swapped."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": dtype, "use_safetensors": True}
    if layout == "varlen":
        register_varlen_attention()
        try:
            model = AutoModelForCausalLM.from_pretrained(
                str(weights_dir), attn_implementation=VARLEN_ATTENTION, **kwargs
            )
            return model, "varlen"
        except (ValueError, NotImplementedError):
            pass
    model = AutoModelForCausalLM.from_pretrained(str(weights_dir), attn_implementation="sdpa", **kwargs)
    return model, "padded"


def attach_lora(model: Any, spec: TrainSpec) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=spec.lora_r,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        target_modules=list(spec.lora_target_modules),
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(spec.seed)  # LoRA A init draws from the global generator
    return get_peft_model(model, config)


@dataclass
class TrainModel:
    """The trained module plus the two parts the label-only loss calls directly."""

    model: Any  # PeftModel (lora) or PreTrainedModel (full)
    backbone: torch.nn.Module
    head: torch.nn.Module
    softcap: float | None
    layout: Layout
    placement: Placement = CPU_FP32
    gradient_checkpointing: bool = False
    compiled: bool = False  # decoder layers compiled by torch.compile (``fast.py``)
    sharded: bool = False  # parameters sharded over the ranks by FSDP (``sharding.py``)
    # ``label_forward`` on backbone and head, through FSDP's hooks when sharded (``sharding.py``).
    label_forward_fn: Callable[[dict[str, Any], torch.Tensor], torch.Tensor] | None = None

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]


def build_model(
    spec: TrainSpec, resume_dir: Path | None, placement: Placement = CPU_FP32, batch_tokens: int = 0
) -> TrainModel:
    """The model of ``spec`` on ``placement``'s device and precision. ``batch_tokens`` (the largest
    batch, in positions) sizes the activation-checkpointing decision."""
    from afinar.training.checkpoint import load_adapter_weights

    weights = resume_dir if (resume_dir is not None and spec.method == "full") else spec.base_model_path
    # bf16 LoRA stores the frozen base in bf16; a full fine-tune keeps fp32 master weights (autocast).
    bf16_base = placement.precision == "bf16" and spec.method == "lora"
    causal_lm, layout = load_causal_lm(
        weights, spec.batch_layout, torch.bfloat16 if bf16_base else torch.float32
    )
    if spec.method == "lora":
        model = attach_lora(causal_lm, spec)
        if resume_dir is not None:
            load_adapter_weights(model, resume_dir)
        if bf16_base:
            keep_lora_in_fp32(model)
        inner = model.get_base_model()
        if spec.quantization == "nf4":  # QLoRA: the frozen decoder linears to NF4, on the run's device
            quantize_base(inner.get_decoder(), placement.device)
    else:
        model = inner = causal_lm
        for p in model.parameters():
            p.requires_grad_(True)
    if placement.device.type != "cpu":
        model.to(placement.device)
    if layout == "varlen" and not varlen_is_exact(inner.get_decoder(), inner.config.vocab_size):
        inner.set_attn_implementation("sdpa")
        layout = "padded"
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    checkpointing = wants_checkpointing(
        spec.gradient_checkpointing, placement, inner.config, batch_tokens, n_trainable, spec.method == "lora"
    )
    if checkpointing:
        if not getattr(inner, "supports_gradient_checkpointing", False):
            raise PlacementError(f"{type(inner).__name__} does not support activation checkpointing")
        enable_checkpointing(inner)
    model.train()
    softcap = getattr(inner.config, "final_logit_softcapping", None)
    return TrainModel(
        model, inner.get_decoder(), inner.get_output_embeddings(), softcap, layout, placement, checkpointing
    )


def enable_checkpointing(model: Any) -> None:
    """Non-reentrant activation checkpointing of every decoder layer (transformers 5 renamed
    ``gradient_checkpointing_enable``; both take the kwargs of ``torch.utils.checkpoint``)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.enable_input_require_grads()


def varlen_is_exact(backbone: torch.nn.Module, vocab_size: int) -> bool:
    """A packed row of two sequences must give each the hidden states it gets alone.

    Guards against architectures that accept the attention function but do not hand the
    ``cu_seq_lens`` through to it (which would let sequences attend to each other).
    """
    ids = [i % vocab_size for i in range(1, 7)]
    weight = next(backbone.parameters())
    dev = weight.device
    # In bf16 the check runs as training does (autocast) and allows bf16's rounding; a leak between
    # sequences changes the hidden states far more than that.
    low = weight.dtype == torch.bfloat16
    tol = 3e-2 if low else 1e-4
    amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=low)
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad(), amp:
            cu = torch.tensor([0, 3, 6], dtype=torch.int32, device=dev)
            packed = backbone(
                input_ids=torch.tensor([ids], device=dev),
                position_ids=torch.tensor([[0, 1, 2, 0, 1, 2]], device=dev),
                cu_seq_lens_q=cu,
                cu_seq_lens_k=cu,
                max_length_q=3,
                max_length_k=3,
                use_cache=False,
            ).last_hidden_state
            alone = backbone(input_ids=torch.tensor([ids[3:]], device=dev), use_cache=False).last_hidden_state
        return bool(torch.allclose(packed[:, 3:].float(), alone.float(), atol=tol, rtol=tol))
    except (TypeError, ValueError, RuntimeError, KeyError):
        return False
    finally:
        backbone.train(was_training)


def label_forward(
    backbone: torch.nn.Module, head: torch.nn.Module, inputs: dict[str, Any], keep: torch.Tensor
) -> torch.Tensor:
    """The LM head's logits at the flat positions ``keep`` of the backbone's hidden states."""
    hidden = backbone(**inputs, use_cache=False).last_hidden_state
    picked = hidden.reshape(-1, hidden.size(-1)).index_select(0, keep)
    logits: torch.Tensor = head(picked)
    return logits


def label_logits(tm: TrainModel, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(fp32 logits at the label positions [n, vocab], their gold ids [n], their flat positions in
    ``batch.targets`` [n]); the LM head runs on those positions only. Shared by the supervised loss
    and DPO's sequence log-probabilities (``dpo.py``)."""
    inputs, targets = batch.inputs, batch.targets.reshape(-1)
    if tm.placement.device.type != "cpu":
        dev = tm.placement.device
        inputs = {k: v.to(dev, non_blocking=True) if torch.is_tensor(v) else v for k, v in inputs.items()}
        targets = targets.to(dev, non_blocking=True)
    keep = (targets != IGNORE_INDEX).nonzero().squeeze(1)
    with tm.placement.autocast():
        if tm.label_forward_fn is not None:
            logits = tm.label_forward_fn(inputs, keep).float()
        else:
            logits = label_forward(tm.backbone, tm.head, inputs, keep).float()
    if tm.softcap:
        logits = torch.tanh(logits / tm.softcap) * tm.softcap
    return logits, targets.index_select(0, keep), keep


def label_scores(tm: TrainModel, batch: Batch) -> tuple[torch.Tensor, int, int]:
    """(sum of cross-entropy over label positions, correct argmax predictions, label positions)."""
    logits, gold, keep = label_logits(tm, batch)
    if keep.numel() == 0:
        return logits.sum() * 0.0, 0, 0
    loss_sum = F.cross_entropy(logits, gold, reduction="sum")
    correct = int((logits.detach().argmax(dim=-1) == gold).sum().item())
    return loss_sum, correct, int(keep.numel())

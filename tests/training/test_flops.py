"""Throughput arithmetic (training/flops.py): FLOPs per trained token, peaks by GPU name, MFU."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from afinar.training.flops import (
    StepCost,
    StepMeter,
    attention_flops,
    dense_flops_per_token,
    mfu,
    peak_flops_for,
)
from afinar.training.model import build_model
from tests.training.conftest import SpecFactory


def test_dense_and_attention_flops_are_the_documented_formulas() -> None:
    assert dense_flops_per_token(n_frozen=100, n_trained=10) == 4 * 100 + 6 * 10
    assert dense_flops_per_token(n_frozen=0, n_trained=135) == 6 * 135  # full fine-tuning
    # Causal: a sequence of L tokens costs 6·layers·width·L·(L+1) (forward 2·…, backward twice).
    assert attention_flops([3], n_layers=2, width=8) == 6 * 2 * 8 * 3 * 4
    assert attention_flops([1, 2], n_layers=1, width=1) == 6 * 1 * 2 + 6 * 2 * 3
    assert attention_flops([], n_layers=4, width=64) == 0


def test_step_cost_counts_linear_weights_by_whether_they_train() -> None:
    model = torch.nn.Sequential(torch.nn.Embedding(50, 4), torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    model[0].weight.requires_grad_(False)
    model[1].weight.requires_grad_(False)
    model.config = SimpleNamespace(num_hidden_layers=2, num_attention_heads=2, hidden_size=8)  # type: ignore[assignment]
    cost = StepCost.of(model)
    assert (cost.n_frozen, cost.n_trained, cost.n_layers, cost.attention_width) == (32, 16, 2, 8)
    assert cost.dense_per_token == 4 * 32 + 6 * 16  # the embedding is a lookup, not a matmul
    assert cost.step_flops([3]) == 3 * (4 * 32 + 6 * 16) + 6 * 2 * 8 * 3 * 4


def test_step_cost_of_the_tiny_lora_model(make_spec: SpecFactory) -> None:
    # hidden 64, MLP 128, 2 layers, 4 heads of 16, 2 KV heads, vocab 400 tied; LoRA r=16 on all 7.
    cost = StepCost.of(build_model(make_spec(), None).model)
    per_layer = 64 * 64 * 2 + 64 * 32 * 2 + 64 * 128 * 3  # q, o; k, v; gate, up, down
    assert cost.n_frozen == 2 * per_layer + 64 * 400  # the (tied) LM head is a matmul too
    lora_per_layer = 16 * ((64 + 64) * 2 + (64 + 32) * 2 + (64 + 128) * 3)
    assert cost.n_trained == 2 * lora_per_layer
    assert (cost.n_layers, cost.attention_width) == (2, 64)
    assert cost.dense_per_token == 4 * 99_328 + 6 * 32_768 == 593_920


def test_full_fine_tuning_trains_every_linear(make_spec: SpecFactory) -> None:
    cost = StepCost.of(build_model(make_spec(method="full"), None).model)
    assert cost.n_frozen == 0 and cost.n_trained == 2 * (64 * 64 * 2 + 64 * 32 * 2 + 64 * 128 * 3) + 64 * 400
    assert cost.dense_per_token == 6 * cost.n_trained


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H200", 989e12),
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA L40S", 362e12),
        ("NVIDIA L4", 121e12),
        ("Some Future Accelerator", None),
    ],
)
def test_peak_by_gpu_name(name: str, peak: float | None) -> None:
    assert peak_flops_for(name) == peak


def test_mfu_needs_a_peak() -> None:
    assert mfu(494.5e12, 989e12) == pytest.approx(0.5)
    assert mfu(1e9, None) is None and mfu(1e9, 0.0) is None


def test_step_fields_on_cpu(make_spec: SpecFactory) -> None:
    model = build_model(make_spec(), None).model
    plain = StepMeter(model, threads=3)
    fields = plain.fields([10, 30], seconds=0.5)
    assert fields == {"step_seconds": 0.5, "tokens_per_second": 80.0, "mfu": None, "device_kind": "cpu:3"}
    peaked = StepMeter(model, threads=3, peak_override=1e9)  # the operator's AFINAR_TRAIN_PEAK_FLOPS
    expected = peaked.cost.step_flops([10, 30]) / 0.5 / 1e9
    assert peaked.fields([10, 30], seconds=0.5)["mfu"] == pytest.approx(expected)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_step_fields_on_cuda_have_the_gpu_peak() -> None:
    name = torch.cuda.get_device_name()
    meter = StepMeter(torch.nn.Linear(64, 64).cuda(), threads=1)
    assert meter.kind == f"cuda:{name}" and meter.peak == peak_flops_for(name)
    meter.start()
    fields = meter.stop([8, 8])
    assert fields["tokens_per_second"] > 0 and fields["device_kind"] == f"cuda:{name}"
    assert (fields["mfu"] is not None) == (peak_flops_for(name) is not None)

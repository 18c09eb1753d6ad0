"""The fast path (``training/fast.py``): bf16 frozen base, fp32 LoRA branch, compiled decoder layers.

One compiled run on the tiny model (compiling costs seconds even there), checked against the exact
fp32 loop: the loss falls and follows the fp32 curve within 1 % per step, the adapter learns (its
B matrices leave their zero init and change what the model outputs, in bf16 as in fp32), and the
fast path's checkpoint resumes in fp32 onto the same curve.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from afinar.training.fast import checkpoint_parameters, min_tokens_to_compile, wants_compile, wants_cpu_bf16
from afinar.training.loop import run_training
from afinar.training.model import build_model
from afinar.training.placement import CPU_FP32, Placement, cpu_supports_bf16, resolve_placement
from afinar.training.spec import TrainSpec
from tests.training.conftest import Recorder, SpecFactory, load_adapter

needs_cpu_bf16 = pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no native bf16")
CPU_BF16 = Placement(torch.device("cpu"), "cpu", "bf16")
CUDA_BF16 = Placement(torch.device("cuda", 0), "cuda:0 (test)", "bf16")
SMOLLM2_135M = 134_515_008  # parameters of the bundled base


def test_auto_compiles_only_a_bf16_cpu_job_long_enough_to_pay_for_it() -> None:
    threshold = min_tokens_to_compile(SMOLLM2_135M)
    assert 40_000 < threshold < 80_000  # ~50 steps of 1k-token batches on the bundled model
    assert min_tokens_to_compile(8 * SMOLLM2_135M) < threshold  # a bigger model saves more per token
    assert wants_compile("auto", CPU_BF16, threshold, SMOLLM2_135M)
    assert not wants_compile("auto", CPU_BF16, threshold - 1, SMOLLM2_135M)
    assert not wants_compile("auto", CPU_FP32, 10**9, SMOLLM2_135M)  # exact fp32: never by itself
    assert not wants_compile("auto", CUDA_BF16, 10**9, SMOLLM2_135M)  # not measured on GPUs
    assert not wants_compile("auto", CPU_BF16, 10**9, SMOLLM2_135M, quantized=True)  # nor on NF4
    assert wants_compile("on", CPU_FP32, 1, SMOLLM2_135M)
    assert not wants_compile("off", CPU_BF16, 10**9, SMOLLM2_135M)


def test_auto_precision_takes_the_fast_path_only_for_a_long_cpu_lora_job(make_spec: SpecFactory) -> None:
    spec = make_spec(precision="auto")
    n = checkpoint_parameters(Path(spec.base_model_path))
    assert n > 0
    enough = min_tokens_to_compile(n)
    assert wants_cpu_bf16(spec, CPU_FP32, enough) == cpu_supports_bf16()  # a CPU without bf16: exact
    assert not wants_cpu_bf16(spec, CPU_FP32, enough - 1)  # too short to pay for compiling
    assert not wants_cpu_bf16(spec, CPU_FP32, enough, processes=2)
    assert not wants_cpu_bf16(spec, CUDA_BF16, enough)
    for forced in (
        {"precision": "fp32"},
        {"compile": "off"},
        {"quantization": "nf4"},
        {"method": "full"},
    ):
        assert not wants_cpu_bf16(spec.model_copy(update=forced), CPU_FP32, enough), forced


def _outputs(spec: TrainSpec, adapter: Path, placement: Placement) -> tuple[torch.Tensor, torch.Tensor]:
    """The final hidden states of a fixed input with the trained adapter and without it."""
    tm = build_model(spec, adapter, placement)
    ids = torch.arange(1, 25).unsqueeze(0)
    tm.model.eval()
    with torch.no_grad(), placement.autocast():
        adapted = tm.backbone(input_ids=ids, use_cache=False).last_hidden_state.float()
        with tm.model.disable_adapter():
            base = tm.backbone(input_ids=ids, use_cache=False).last_hidden_state.float()
    return adapted, base


@needs_cpu_bf16
def test_the_compiled_bf16_path_follows_fp32_and_resumes_in_fp32(
    make_spec: SpecFactory, tmp_path: Path
) -> None:
    exact = Recorder()
    run_training(make_spec(output_dir=str(tmp_path / "exact"), precision="fp32"), exact)
    fast = Recorder()
    spec = make_spec(output_dir=str(tmp_path / "fast"), precision="bf16", compile="on")
    final = run_training(spec, fast)
    started = fast.events[0]
    assert (started["device"], started["precision"], started["compiled"]) == ("cpu", "bf16", True)
    assert "compiled" not in exact.events[0]  # the exact path's started line is what it was

    losses = fast.losses()
    assert len(losses) == 6 and sum(losses[3:]) < sum(losses[:3])  # it learns
    assert losses == pytest.approx(exact.losses(), rel=0.01)  # and tracks the exact loop

    # The adapter moved off its init (B starts at zero) and changes the model's output; in bf16 the
    # change is the one fp32 sees, not rounded away.
    assert final is not None
    adapter = load_adapter(final)
    assert {t.dtype for t in adapter.values()} == {torch.float32}
    assert all(t.abs().max() > 0 for k, t in adapter.items() if "lora_B" in k)
    adapted32, base32 = _outputs(spec, final, CPU_FP32)
    adapted16, base16 = _outputs(spec, final, resolve_placement("cpu", "bf16"))
    delta32, delta16 = adapted32 - base32, adapted16 - base16
    assert delta32.norm() > 1e-3 * base32.norm()
    assert (delta16 - delta32).norm() < 0.1 * delta32.norm()

    # The epoch-1 checkpoint of the fast path goes on in exact fp32, along the same curve.
    checkpoint = fast.of("checkpoint")[0]
    assert checkpoint["step"] == 3
    resumed = Recorder()
    rest = spec.model_copy(
        update={
            "resume_from": checkpoint["path"],
            "precision": "fp32",
            "compile": "off",
            "output_dir": str(tmp_path / "resumed"),
        }
    )
    assert run_training(rest, resumed) is not None
    assert resumed.events[0]["precision"] == "fp32" and "compiled" not in resumed.events[0]
    assert losses[:3] + resumed.losses() == pytest.approx(exact.losses(), rel=0.01)

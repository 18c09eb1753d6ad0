"""Device and precision: what ``auto`` picks, forced choices that cannot run, bf16 with fp32 LoRA."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from afinar.training import placement as placement_module
from afinar.training.loop import largest_batch_tokens, run_training
from afinar.training.model import build_model
from afinar.training.placement import (
    CPU_FP32,
    PlacementError,
    activation_bytes,
    cpu_flags,
    cpu_supports_bf16,
    keep_lora_in_fp32,
    resolve_placement,
    wants_checkpointing,
)
from tests.training.conftest import Recorder, SpecFactory, load_adapter

SRC = Path(__file__).resolve().parents[2] / "src"
needs_cpu_bf16 = pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no native bf16")
needs_cuda = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_auto_picks_what_the_machine_has() -> None:
    assert resolve_placement("cpu", "auto") == CPU_FP32  # the CPU defaults to today's exact path
    assert resolve_placement("cpu", "fp32") == CPU_FP32
    auto = resolve_placement("auto", "auto")
    if torch.cuda.is_available():
        assert auto.device.type == "cuda" and auto.name.startswith(f"cuda:{auto.device.index} (")
        assert auto.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    else:
        assert auto == CPU_FP32 and auto.name == "cpu" and auto.dtype == torch.float32


def test_forced_cuda_without_cuda_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(PlacementError, match=r"AFINAR_TRAIN_DEVICE=cuda.*no usable CUDA device"):
        resolve_placement("cuda", "auto")
    assert resolve_placement("auto", "auto") == CPU_FP32


def test_forced_bf16_on_a_cpu_without_bf16_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n\nprocessor\t: 1\nflags\t: avx2\n")
    assert cpu_flags(info) == {"fpu", "sse2", "avx2", "avx512f"}
    assert not cpu_supports_bf16(cpu_flags(info))
    assert cpu_supports_bf16(frozenset({"avx2", "avx512_bf16"})) and cpu_supports_bf16(
        frozenset({"amx_bf16"})
    )
    assert cpu_supports_bf16(frozenset({"asimd", "bf16"}))  # Arm: FEAT_BF16
    assert cpu_flags(tmp_path / "missing") == frozenset()

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(placement_module, "cpu_flags", lambda: cpu_flags(info))
    with pytest.raises(PlacementError, match=r"AFINAR_TRAIN_PRECISION=bf16.*no native bf16"):
        resolve_placement("auto", "bf16")
    assert resolve_placement("auto", "fp32") == CPU_FP32


def test_the_child_reports_an_impossible_device_as_an_error_event(
    make_spec: SpecFactory, tmp_path: Path
) -> None:
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(make_spec(device="cuda").model_dump_json())
    env = {**os.environ, "PYTHONPATH": str(SRC), "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a GPU box
    proc = subprocess.run(
        [sys.executable, "-m", "afinar.training", str(spec_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in events] == ["error"]  # nothing trained, no silent fallback to the CPU
    assert "'cuda' was requested" in events[0]["message"]


def test_checkpointing_choice_and_estimates(make_spec: SpecFactory) -> None:
    from transformers import LlamaConfig

    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, vocab_size=400)
    fp32 = activation_bytes(config, 100, "fp32", lora=True)
    assert fp32 == 100 * (2 * (16 * 64 + 5 * 128) * 4 + 2 * 400 * 4)
    assert activation_bytes(config, 200, "fp32", lora=True) == 2 * fp32
    # bf16 halves the saved intermediates but the LoRA branches keep fp32 inputs.
    bf16 = activation_bytes(config, 100, "bf16", lora=True)
    assert bf16 == 100 * (2 * ((16 * 64 + 5 * 128) * 2 + (6 * 64 + 128) * 4) + 2 * 400 * 4)
    assert wants_checkpointing("on", CPU_FP32, config, 10, 10, True)
    assert not wants_checkpointing("off", CPU_FP32, config, 10**9, 10, True)
    assert not wants_checkpointing("auto", CPU_FP32, config, 10**9, 10, True)  # never on the CPU

    from afinar.training.data import encode_file
    from afinar.training.model import load_tokenizer

    spec = make_spec(batch_size=2)
    examples = encode_file(load_tokenizer(spec.base_model_path), spec.train_file, spec.max_length, "t")
    lengths = sorted((e.n_tokens for e in examples), reverse=True)
    assert largest_batch_tokens(examples, spec) == lengths[0] + lengths[1]
    padded = spec.model_copy(update={"batch_layout": "padded"})
    assert largest_batch_tokens(examples, padded) == 2 * lengths[0]


def test_gradient_checkpointing_on_the_cpu_is_exact(make_spec: SpecFactory, tmp_path: Path) -> None:
    plain, ckpt = Recorder(), Recorder()
    run_training(make_spec(output_dir=str(tmp_path / "a"), n_epochs=1, lora_dropout=0.1), plain)
    spec = make_spec(
        output_dir=str(tmp_path / "b"), n_epochs=1, lora_dropout=0.1, gradient_checkpointing="on"
    )
    run_training(spec, ckpt)
    assert plain.events[0]["gradient_checkpointing"] is False
    assert ckpt.events[0]["gradient_checkpointing"] is True
    assert ckpt.losses() == pytest.approx(plain.losses(), rel=1e-6, abs=1e-6)
    tm = build_model(spec, None)
    inner = tm.model.get_base_model()
    on = getattr(inner, "is_activation_checkpointing", None)
    assert tm.gradient_checkpointing and (inner.is_gradient_checkpointing if on is None else on)


def _lora_layer(scale: float) -> Any:
    """One bf16 Linear with an fp32 LoRA whose delta is ``scale`` of the base output's size."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(64, 64, bias=False))
    model = get_peft_model(base.to(torch.bfloat16), LoraConfig(r=4, lora_alpha=4, target_modules=["0"]))
    layer = model.base_model.model[0]
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(torch.randn(4, 64) * 0.1)
        layer.lora_B["default"].weight.copy_(torch.randn(64, 4) * scale)
    return model, layer


def _delta_error(layer: Any, x: torch.Tensor) -> float:
    """How far the layer's output minus its base output is from the exact fp32 LoRA delta (relative)."""
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(x).float()
            base = layer.base_layer(x).float()
        a, b = layer.lora_A["default"].weight.float(), layer.lora_B["default"].weight.float()
        exact = (x.float() @ a.T @ b.T) * layer.scaling["default"]
    return float((out - base - exact).norm().item() / exact.norm().item())


@needs_cpu_bf16
def test_the_lora_delta_survives_bf16_only_in_fp32() -> None:
    x = torch.randn(32, 64)
    model, layer = _lora_layer(scale=1e-3)  # a delta ~1e-3 of the output, below bf16's resolution
    assert {p.dtype for p in layer.lora_A.parameters()} == {torch.float32}
    naive = _delta_error(layer, x)  # peft's own forward: the delta is added in bf16
    assert naive > 0.2, naive  # mostly rounded away: the trap
    assert keep_lora_in_fp32(model) == 1
    kept = _delta_error(layer, x)
    assert kept < 1e-3, kept


@needs_cpu_bf16
def test_bf16_on_the_cpu_follows_the_fp32_curve_and_resumes_across_precision(
    make_spec: SpecFactory, tmp_path: Path
) -> None:
    fp32 = Recorder()
    run_training(make_spec(output_dir=str(tmp_path / "fp32"), n_epochs=2), fp32)
    bf16 = Recorder()
    spec = make_spec(output_dir=str(tmp_path / "bf16"), n_epochs=2, precision="bf16")
    assert run_training(spec, bf16, should_pause=lambda: len(bf16.of("step")) == 3) is None
    assert bf16.events[0]["device"] == "cpu" and bf16.events[0]["precision"] == "bf16"
    paused = bf16.events[-1]
    assert paused["event"] == "paused"
    assert {t.dtype for t in load_adapter(Path(paused["path"])).values()} == {torch.float32}

    resumed = Recorder()  # the bf16 checkpoint goes on in fp32
    final = run_training(
        spec.model_copy(update={"resume_from": paused["path"], "precision": "fp32"}), resumed
    )
    assert final is not None and resumed.events[0]["precision"] == "fp32"
    losses = bf16.losses() + resumed.losses()
    assert len(losses) == len(fp32.losses()) == 6
    assert losses == pytest.approx(fp32.losses(), rel=0.01)
    assert {t.dtype for t in load_adapter(final).values()} == {torch.float32}

    tm = build_model(spec, None, resolve_placement("cpu", "bf16"))
    frozen = {p.dtype for p in tm.model.parameters() if not p.requires_grad}
    assert frozen == {torch.bfloat16} and {p.dtype for p in tm.params} == {torch.float32}


@pytest.mark.parametrize("checkpointing", ["off", "on"])
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_lora_follows_the_cpu_fp32_curve(
    make_spec: SpecFactory, tmp_path: Path, checkpointing: str
) -> None:
    cpu = Recorder()
    run_training(make_spec(output_dir=str(tmp_path / "cpu"), device="cpu"), cpu)
    gpu = Recorder()
    spec = make_spec(output_dir=str(tmp_path / "gpu"), gradient_checkpointing=checkpointing)
    final = run_training(spec, gpu)  # auto: CUDA in bf16
    started, done = gpu.events[0], gpu.events[-1]
    assert started["device"].startswith("cuda:") and started["precision"] == "bf16"
    assert started["gradient_checkpointing"] is (checkpointing == "on")
    assert done["peak_memory_bytes"] > 0
    assert gpu.losses() == pytest.approx(cpu.losses(), rel=0.01)
    assert final is not None and {t.dtype for t in load_adapter(final).values()} == {torch.float32}

    tm = build_model(spec, None, resolve_placement("auto", "auto"))
    assert {p.device.type for p in tm.model.parameters()} == {"cuda"}
    assert {p.dtype for p in tm.model.parameters() if not p.requires_grad} == {torch.bfloat16}
    assert {p.dtype for p in tm.params} == {torch.float32}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_checkpoint_resumes_on_the_cpu(make_spec: SpecFactory, tmp_path: Path) -> None:
    first = Recorder()
    spec = make_spec(output_dir=str(tmp_path / "run"))
    assert run_training(spec, first, should_pause=lambda: len(first.of("step")) == 2) is None
    rest = Recorder()
    cpu_spec = spec.model_copy(update={"resume_from": first.events[-1]["path"], "device": "cpu"})
    assert run_training(cpu_spec, rest) is not None
    assert rest.events[0]["device"] == "cpu" and rest.events[0]["start_step"] == 2
    assert [s["step"] for s in rest.of("step")] == [3, 4, 5, 6]

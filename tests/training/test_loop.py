"""The training loop in-process: events, reproducibility, what is trained, outputs, validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from afinar.training.loop import run_training
from tests.support.data import write_jsonl
from tests.training.conftest import QA, Recorder, SpecFactory, chat, load_adapter


def test_events_and_token_counts(make_spec: SpecFactory, valid_file: Path) -> None:
    spec = make_spec(valid_file=str(valid_file), n_epochs=3, eval_every_steps=4)
    rec = Recorder()
    final = run_training(spec, rec)

    started = rec.events[0]
    assert started["event"] == "started"
    assert started == {
        "event": "started",
        "total_steps": 9,
        "steps_per_epoch": 3,
        "start_step": 0,
        "n_examples": 6,
        "tokens_per_epoch": started["tokens_per_epoch"],
        "device": "cpu",  # auto, without CUDA
        "precision": "fp32",  # auto on the CPU: the exact path
        "gradient_checkpointing": False,
    }
    steps = rec.of("step")
    assert [s["step"] for s in steps] == list(range(1, 10))
    assert [s["epoch"] for s in steps] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert steps[-1]["trained_tokens"] == started["tokens_per_epoch"] * 3
    assert steps[2]["trained_tokens"] == started["tokens_per_epoch"]
    # Validation at every 4th step, at every checkpoint (epoch ends) and at the last step.
    evaluated = [s["step"] for s in steps if s["valid_loss"] is not None]
    assert evaluated == [3, 4, 6, 8, 9]
    assert all(0.0 <= s["valid_accuracy"] <= 1.0 for s in steps if s["valid_loss"] is not None)
    # The full validation loss (every validation example) comes with the last step only.
    assert [s["step"] for s in steps if s["full_valid_loss"] is not None] == [9]
    last = steps[-1]
    assert 0.0 <= last["full_valid_accuracy"] <= 1.0 and last["full_valid_loss"] > 0.0

    ckpts = rec.of("checkpoint")
    assert [(c["step"], c["epoch"]) for c in ckpts] == [(3, 1), (6, 2), (9, 3)]
    keys = {"step", "train_loss", "train_mean_token_accuracy", "valid_loss", "valid_mean_token_accuracy"}
    full_keys = {"full_valid_loss", "full_valid_mean_token_accuracy"}
    for c in ckpts:
        assert Path(c["path"]) == Path(spec.output_dir) / "checkpoints" / f"step-{c['step']}"
        assert set(c["metrics"]) == (keys | full_keys if c["step"] == 9 else keys)
        assert c["metrics"]["valid_loss"] is not None
    assert ckpts[-1]["metrics"]["full_valid_loss"] == last["full_valid_loss"]
    assert ckpts[-1]["metrics"]["full_valid_mean_token_accuracy"] == last["full_valid_accuracy"]
    done = rec.events[-1]
    assert done == {
        "event": "done",
        "step": 9,
        "adapter_path": str(final),
        "trained_tokens": started["tokens_per_epoch"] * 3,
        "peak_memory_bytes": done["peak_memory_bytes"],
    }
    assert done["peak_memory_bytes"] > 10 * 2**20  # the process's peak RSS (torch alone is more)
    assert final == Path(spec.output_dir) / "final"
    json.dumps(rec.events, allow_nan=False)  # strict JSON throughout


def test_step_events_report_throughput(make_spec: SpecFactory) -> None:
    rec = Recorder()
    run_training(make_spec(n_epochs=1, batch_size=2, threads=1), rec)
    steps = rec.of("step")
    assert steps and all(s["tokens_per_second"] > 0 and s["step_seconds"] > 0 for s in steps)
    assert all(s["device_kind"] == "cpu:1/fp32" and s["mfu"] is None for s in steps)  # no CPU peak known
    rec = Recorder()
    run_training(make_spec(n_epochs=1, batch_size=2, threads=1, peak_flops=1e12), rec)  # an operator's
    assert all(s["mfu"] > 0 for s in rec.of("step"))


def test_auto_eval_interval_and_no_valid_file(make_spec: SpecFactory, valid_file: Path) -> None:
    rec = Recorder()
    run_training(make_spec(valid_file=str(valid_file), n_epochs=1, batch_size=1), rec)
    assert [s["step"] for s in rec.of("step") if s["valid_loss"] is not None] == [1, 2, 3, 4, 5, 6]
    rec = Recorder()
    run_training(make_spec(n_epochs=1), rec)
    assert all(s["valid_loss"] is None and s["valid_accuracy"] is None for s in rec.of("step"))
    assert all(s["full_valid_loss"] is None for s in rec.of("step"))
    assert "full_valid_loss" not in rec.of("checkpoint")[-1]["metrics"]


def test_reproducible(make_spec: SpecFactory, tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        rec = Recorder()
        final = run_training(make_spec(output_dir=str(tmp_path / name), lora_dropout=0.1), rec)
        assert final is not None
        runs.append((rec.losses(), load_adapter(final)))
    (losses_a, adapter_a), (losses_b, adapter_b) = runs
    assert losses_a == losses_b
    assert adapter_a.keys() == adapter_b.keys()
    assert all(torch.equal(adapter_a[k], adapter_b[k]) for k in adapter_a)
    rec = Recorder()
    run_training(make_spec(output_dir=str(tmp_path / "c"), seed=8, lora_dropout=0.1), rec)
    assert rec.losses() != losses_a


def test_loss_falls(make_spec: SpecFactory, tmp_path: Path) -> None:
    # The tiny random model's frozen embeddings are small, so LoRA cannot drive the loss far
    # (it levels off near 4.8 from 6.0); a steady fall of well over half a nat is the signal.
    rows = [chat(q, "The secret code word is zanzibar.") for q, _ in QA[:4]]
    train = write_jsonl(tmp_path / "learnable.jsonl", rows)
    rec = Recorder()
    run_training(make_spec(train_file=str(train), n_epochs=12, batch_size=4), rec)
    losses = rec.losses()
    assert losses[-1] < losses[0] - 0.5
    assert all(later < earlier for earlier, later in zip(losses[::4], losses[4::4], strict=False))


def test_varlen_and_padded_layouts_agree(make_spec: SpecFactory, tmp_path: Path) -> None:
    results = []
    for layout in ("varlen", "padded"):
        rec = Recorder()
        final = run_training(make_spec(output_dir=str(tmp_path / layout), batch_layout=layout), rec)
        assert final is not None
        results.append((rec.losses(), load_adapter(final)))
    (lv, av), (lp, ap) = results
    assert lv == pytest.approx(lp, abs=1e-5)
    assert all(torch.allclose(av[k], ap[k], atol=1e-5) for k in av)


def test_full_fine_tuning(make_spec: SpecFactory, tiny_model_dir: Path) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    spec = make_spec(method="full", n_epochs=1)
    assert spec.learning_rate == pytest.approx(2e-4)  # 2e-5 x 10
    rec = Recorder()
    final = run_training(spec, rec)
    assert final is not None
    assert (final / "model.safetensors").is_file() and not (final / "adapter_model.safetensors").exists()
    assert (final / "tokenizer_config.json").is_file()
    before = load_file(str(tiny_model_dir / "model.safetensors"))
    after = load_file(str(final / "model.safetensors"))
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert "model.layers.0.self_attn.q_proj.weight" in changed
    model = AutoModelForCausalLM.from_pretrained(final)
    assert model.config.num_hidden_layers == 2
    assert rec.events[-1]["event"] == "done"


def test_checkpoint_every_steps(make_spec: SpecFactory) -> None:
    rec = Recorder()
    run_training(make_spec(checkpoint_every_steps=2), rec)
    assert [c["step"] for c in rec.of("checkpoint")] == [2, 3, 4, 6]


def test_should_pause_writes_checkpoint(make_spec: SpecFactory) -> None:
    spec = make_spec(n_epochs=1)
    rec = Recorder()
    result = run_training(spec, rec, should_pause=lambda: True)
    assert result is None
    paused = rec.events[-1]
    assert paused["event"] == "paused" and paused["step"] == 1
    assert paused["trained_tokens"] == rec.of("step")[0]["trained_tokens"]
    assert (Path(paused["path"]) / "state.json").is_file()
    assert not (Path(spec.output_dir) / "final").exists()

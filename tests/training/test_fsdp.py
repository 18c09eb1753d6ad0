"""Full fine-tunes sharded over two processes (FSDP2 on gloo, this CPU), as the worker starts them.

The 2-process job runs through the launcher (``AFINAR_TRAIN_PROCESSES=2``); the one-process runs
train in this test's process. Tolerance: per-step train and validation losses within 1e-4 relative
of the one-process run (the ranks add the same terms in another order); ``trained_tokens`` exactly
equal; checkpoint tensors within 1e-5 absolute of the one-process checkpoint's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from afinar.training.checkpoint import load_optimizer_state
from afinar.training.loop import run_training
from afinar.training.sharding import strategy
from tests.training.conftest import Recorder, SpecFactory
from tests.training.test_distributed import Launched, close, paused_after_first_step

WEIGHTS = "model.safetensors"
ATOL = 1e-5


def test_full_fine_tunes_shard_and_lora_stays_replicated() -> None:
    assert strategy("auto", "full", 2) == "fsdp"
    assert strategy("fsdp", "full", 4) == "fsdp"
    assert strategy("ddp", "full", 2) == "ddp"
    assert strategy("auto", "lora", 2) == strategy("fsdp", "lora", 2) == "ddp"
    assert strategy("auto", "full", 1) == "single"


def same_curve(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert [e["step"] for e in got] == [e["step"] for e in want]
    for a, b in zip(got, want, strict=True):
        assert a["trained_tokens"] == b["trained_tokens"], (a, b)
        assert close(a["train_loss"], b["train_loss"]), (a, b)
        assert close(a["train_accuracy"], b["train_accuracy"]), (a, b)
        assert (a["valid_loss"] is None) == (b["valid_loss"] is None)
        assert a["valid_loss"] is None or close(a["valid_loss"], b["valid_loss"]), (a, b)


def assert_same_tensors(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        if torch.is_tensor(value):
            assert got[key].shape == value.shape and got[key].dtype == value.dtype, key
            assert torch.allclose(got[key], value, atol=ATOL, rtol=0), key
        elif isinstance(value, dict):
            assert_same_tensors(got[key], value)
        else:
            assert got[key] == value, key


def test_two_sharded_processes_match_one_and_their_checkpoints_resume_anywhere(
    make_spec: SpecFactory, valid_file: Path, tmp_path: Path
) -> None:
    # batch_size 3 over 6 examples: each global batch splits 2 + 1; checkpoints at steps 2 and 4.
    common: dict[str, Any] = {
        "method": "full",
        "batch_size": 3,
        "n_epochs": 2,
        "valid_file": str(valid_file),
        "learning_rate_multiplier": 50.0,
    }
    one = Recorder()
    run_training(make_spec(output_dir=str(tmp_path / "one"), **common), one)
    steps_one = one.of("step")
    assert steps_one[0]["train_loss"] != steps_one[-1]["train_loss"]  # it learned: the curve is no line

    two = Launched(make_spec(output_dir=str(tmp_path / "two"), **common), tmp_path, "two")
    two.until(None)
    assert two.child.wait() == 0, two.tail()
    started = two.of("started")
    assert len(started) == 1 and started[0]["processes"] == 2 and started[0]["sharding"] == "fsdp"
    total = sum(t.numel() for t in load_file(str(tmp_path / "one" / "final" / WEIGHTS)).values())
    assert abs(started[0]["rank_parameters"] - total / 2) <= 0.02 * total, (started, total)
    same_curve(two.of("step"), steps_one)
    assert [e["step"] for e in two.of("checkpoint")] == [2, 4]  # rank 0 alone writes and reports them
    assert two.of("done")[0]["trained_tokens"] == one.of("done")[0]["trained_tokens"]

    # The checkpoint is the one-process checkpoint: full weights (tied head left out, as one process
    # saves it) and the optimizer state keyed by parameter index; so is the final model.
    for name in ("checkpoints/step-2", "final"):
        assert_same_tensors(
            load_file(str(tmp_path / "two" / name / WEIGHTS)),
            load_file(str(tmp_path / "one" / name / WEIGHTS)),
        )
    step2 = tmp_path / "two" / "checkpoints" / "step-2"
    assert_same_tensors(
        load_optimizer_state(step2), load_optimizer_state(tmp_path / "one/checkpoints/step-2")
    )

    # One process resumes the sharded job's checkpoint, and two processes resume it, on the same curve.
    alone = Recorder()
    run_training(make_spec(output_dir=str(tmp_path / "alone"), resume_from=str(step2), **common), alone)
    same_curve(alone.of("step"), steps_one[2:])
    resumed = Launched(
        make_spec(output_dir=str(tmp_path / "resumed"), resume_from=str(step2), **common), tmp_path, "resumed"
    )
    resumed.until(None)
    assert resumed.child.wait() == 0, resumed.tail()
    assert resumed.of("started")[0]["start_step"] == 2
    same_curve(resumed.of("step"), steps_one[2:])
    assert resumed.of("done")[0]["trained_tokens"] == one.of("done")[0]["trained_tokens"]


def test_a_paused_sharded_job_writes_the_whole_model(make_spec: SpecFactory, tmp_path: Path) -> None:
    spec = make_spec(output_dir=str(tmp_path / "p"), method="full", step_delay_seconds=1.0)
    paused = paused_after_first_step(spec, tmp_path)
    weights = load_file(str(Path(paused["path"]) / WEIGHTS))
    assert weights["model.embed_tokens.weight"].shape == (400, 64)  # the tiny model's, unsharded
    assert set(load_optimizer_state(paused["path"])["state"]) == set(range(len(weights)))

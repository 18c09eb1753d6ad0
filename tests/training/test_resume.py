"""Pause at a checkpoint and resume: the result equals an uninterrupted run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from afinar.training.loop import TrainingError, run_training
from tests.training.conftest import Recorder, SpecFactory

MEASURED = {"step_seconds", "tokens_per_second", "mfu"}


def _weights(final: Path) -> dict[str, torch.Tensor]:
    name = (
        "adapter_model.safetensors" if (final / "adapter_model.safetensors").exists() else "model.safetensors"
    )
    return load_file(str(final / name))


@pytest.mark.parametrize("method", ["lora", "full"])
def test_resume_equals_uninterrupted_run(
    make_spec: SpecFactory, valid_file: Path, tmp_path: Path, method: str
) -> None:
    common = {"method": method, "n_epochs": 3, "lora_dropout": 0.1, "valid_file": str(valid_file)}
    whole = Recorder()
    final_whole = run_training(make_spec(output_dir=str(tmp_path / "whole"), **common), whole)
    assert final_whole is not None

    first = Recorder()
    spec = make_spec(output_dir=str(tmp_path / "split"), **common)
    assert run_training(spec, first, should_pause=lambda: len(first.of("step")) == 4) is None
    paused = first.events[-1]
    assert paused["event"] == "paused" and paused["step"] == 4  # mid-epoch 2
    state = json.loads((Path(paused["path"]) / "state.json").read_text())
    assert state["step"] == 4 and state["epoch"] == 2 and state["trained_tokens"] == paused["trained_tokens"]
    assert set(torch.load(Path(paused["path"]) / "optimizer.pt", weights_only=True)) == {
        "state",
        "param_groups",
    }

    second = Recorder()
    final_split = run_training(spec.model_copy(update={"resume_from": paused["path"]}), second)
    assert final_split is not None
    assert second.events[0]["start_step"] == 4
    assert [s["step"] for s in second.of("step")] == [5, 6, 7, 8, 9]

    def steps(events: list[dict]) -> list[dict]:  # type: ignore[type-arg]
        """Step events without the wall-clock measurements, which differ from run to run."""
        return [{k: v for k, v in e.items() if k not in MEASURED} for e in events]

    whole_steps = steps(whole.of("step"))
    assert steps(first.of("step")) + steps(second.of("step")) == whole_steps
    assert second.events[-1]["trained_tokens"] == whole.events[-1]["trained_tokens"]
    a, b = _weights(final_whole), _weights(final_split)
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k]) for k in a)


def test_resume_rejects_a_checkpoint_of_another_run(make_spec: SpecFactory, tmp_path: Path) -> None:
    rec = Recorder()
    spec = make_spec(n_epochs=1)
    run_training(spec, rec)
    ckpt_path = rec.of("checkpoint")[-1]["path"]
    with pytest.raises(TrainingError, match="seed"):
        run_training(
            make_spec(output_dir=str(tmp_path / "other"), seed=99, resume_from=ckpt_path), Recorder()
        )


def test_resume_at_the_last_step_only_writes_final(make_spec: SpecFactory, tmp_path: Path) -> None:
    rec = Recorder()
    run_training(make_spec(n_epochs=1), rec)
    last = rec.of("checkpoint")[-1]
    again = Recorder()
    final = run_training(
        make_spec(output_dir=str(tmp_path / "again"), n_epochs=1, resume_from=last["path"]), again
    )
    assert [e["event"] for e in again.events] == ["started", "done"]
    assert again.events[-1]["trained_tokens"] == last["trained_tokens"]
    assert final is not None and (final / "adapter_model.safetensors").is_file()

"""DPO on the tiny model: the held-out preference margin rises, the reference is the base with the
adapter switched off, the billed tokens are the estimate's, and a resumed run equals a whole one."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import mean

import pytest
import torch
from pydantic import ValidationError

from afinar.datasets.validation import validate_file
from afinar.training.data import PreferencePair, encode_preference_file
from afinar.training.dpo import logp_margins, sequence_logps, with_reference
from afinar.training.loop import run_training
from afinar.training.model import build_model, load_tokenizer, pad_token_id
from afinar.training.spec import TrainSpec
from tests.support.data import write_jsonl
from tests.support.preference import preference_rows
from tests.training.conftest import Recorder, SpecFactory, load_adapter

MEASURED = {"step_seconds", "tokens_per_second", "mfu"}


def _pairs(spec: TrainSpec, path: Path) -> tuple[list[PreferencePair], int]:
    tokenizer = load_tokenizer(spec.base_model_path)
    return encode_preference_file(tokenizer, path, spec.max_length, "held_out"), pad_token_id(tokenizer)


def _margins(spec: TrainSpec, adapter: Path | None, path: Path) -> list[float]:
    """log p(preferred) − log p(non-preferred) of each pair in ``path``: the base (no adapter) or the
    base with a trained adapter, by the same function."""
    pairs, pad = _pairs(spec, path)
    return logp_margins(build_model(spec, adapter), pairs, spec.batch_size, pad)


@pytest.fixture
def dpo_spec(make_spec: SpecFactory, tmp_path: Path) -> SpecFactory:
    train = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(range(12)))

    def factory(**overrides: object) -> TrainSpec:
        fields: dict[str, object] = {"train_file": str(train), "objective": "dpo", "batch_size": 4}
        return make_spec(**{**fields, **overrides})

    return factory


def test_dpo_raises_the_held_out_preference_margin(dpo_spec: SpecFactory, tmp_path: Path) -> None:
    held_out = write_jsonl(tmp_path / "held_out.jsonl", preference_rows(range(100, 108)))
    spec = dpo_spec(n_epochs=3, beta=0.1)
    rec = Recorder()
    final = run_training(spec, rec)
    assert final is not None

    before, after = _margins(spec, None, held_out), _margins(spec, final, held_out)
    assert mean(after) > mean(before)
    assert sum(m > 0 for m in after) >= sum(m > 0 for m in before)

    steps = rec.of("step")
    # A fresh adapter (LoRA B = 0) is exactly the reference: −log σ(0) = log 2, margin 0.
    assert steps[0]["dpo_loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert steps[0]["reward_margin"] == pytest.approx(0.0, abs=1e-6)
    assert steps[-1]["dpo_loss"] < steps[0]["dpo_loss"] and steps[-1]["reward_margin"] > 0
    assert all(s["train_loss"] == s["dpo_loss"] and s["train_accuracy"] is None for s in steps)
    assert all(0.0 <= s["preference_accuracy"] <= 1.0 for s in steps)
    assert rec.of("checkpoint")[-1]["metrics"]["reward_margin"] == steps[-1]["reward_margin"]


def test_the_reference_is_the_base_with_the_adapter_switched_off(
    dpo_spec: SpecFactory, tmp_path: Path
) -> None:
    spec = dpo_spec(n_epochs=1)
    final = run_training(spec, Recorder())
    assert final is not None
    pairs, pad = _pairs(spec, Path(spec.train_file))
    tuned = build_model(spec, final)
    referenced = with_reference(tuned, pairs, spec.batch_size, pad)
    base = build_model(spec, None)
    with torch.no_grad():
        base_logps = sequence_logps(base, [e for p in pairs for e in (p.chosen, p.rejected)], pad)
        tuned_logps = sequence_logps(tuned, [e for p in pairs for e in (p.chosen, p.rejected)], pad)
    refs = torch.tensor([x for p in referenced for x in (p.ref_chosen, p.ref_rejected)])
    assert torch.allclose(refs, base_logps, atol=1e-4)
    assert not torch.allclose(refs, tuned_logps, atol=1e-4)  # the adapter is on again afterwards


def test_dpo_resume_equals_uninterrupted_run_and_bills_the_estimate(
    dpo_spec: SpecFactory, tmp_path: Path
) -> None:
    # A short context cuts some answers: the estimate and the trainer must cut them alike.
    common: dict[str, object] = {"n_epochs": 2, "max_length": 56, "lora_dropout": 0.1}
    whole = Recorder()
    final_whole = run_training(dpo_spec(output_dir=str(tmp_path / "whole"), **common), whole)
    assert final_whole is not None

    spec = dpo_spec(output_dir=str(tmp_path / "split"), **common)
    first = Recorder()
    assert run_training(spec, first, should_pause=lambda: len(first.of("step")) == 2) is None
    paused = first.events[-1]
    assert paused["event"] == "paused" and paused["step"] == 2
    second = Recorder()
    final_split = run_training(spec.model_copy(update={"resume_from": paused["path"]}), second)
    assert final_split is not None

    def steps(rec: Recorder) -> list[dict[str, object]]:
        return [{k: v for k, v in e.items() if k not in MEASURED} for e in rec.of("step")]

    assert steps(first) + steps(second) == steps(whole)
    a, b = load_adapter(final_whole), load_adapter(final_split)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k]) for k in a)

    report = validate_file(
        spec.train_file, method="dpo", tokenizer=load_tokenizer(spec.base_model_path), context_length=56
    )
    assert report.n_truncated and report.billable_tokens_per_epoch is not None
    assert whole.of("done")[0]["trained_tokens"] == report.billable_tokens_per_epoch * spec.n_epochs
    assert second.of("done")[0]["trained_tokens"] == whole.of("done")[0]["trained_tokens"]


def test_dpo_trains_lora_only_and_a_chat_file_is_refused(dpo_spec: SpecFactory, train_file: Path) -> None:
    with pytest.raises(ValidationError, match="DPO trains LoRA only"):
        dpo_spec(method="full")
    rec = Recorder()
    with pytest.raises(ValueError, match="train_file line 1: expected a preference object"):
        run_training(dpo_spec(train_file=str(train_file)), rec)

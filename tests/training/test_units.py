"""Small parts: the spec, data order and batching, atomic directories, the protocol encoder."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from afinar.datasets.encoding import EncodedExample
from afinar.training.checkpoint import atomic_dir
from afinar.training.data import DataError, collate, epoch_order, read_jsonl, steps_per_epoch
from afinar.training.protocol import JsonLinesEmitter
from afinar.training.spec import LLAMA_PROJECTIONS, TrainSpec

REQUIRED = {
    "base_model_path": "m",
    "train_file": "t.jsonl",
    "output_dir": "o",
    "n_epochs": 1,
    "batch_size": 2,
    "learning_rate_multiplier": 2.0,
    "seed": 0,
    "max_length": 64,
}


def test_spec_defaults_and_learning_rate() -> None:
    spec = TrainSpec(**REQUIRED)
    assert spec.method == "lora" and spec.lora_r == 16 and spec.lora_alpha == 32 and spec.lora_dropout == 0.0
    assert spec.lora_target_modules == list(LLAMA_PROJECTIONS)
    assert spec.learning_rate == pytest.approx(4e-4)
    assert TrainSpec(**REQUIRED, method="full").learning_rate == pytest.approx(4e-5)
    assert TrainSpec(**REQUIRED, base_learning_rate=1e-3).learning_rate == pytest.approx(2e-3)
    assert spec.n_threads >= 1 and TrainSpec(**REQUIRED, threads=3).n_threads == 3
    with pytest.raises(ValidationError):
        TrainSpec(**REQUIRED, n_epoch=3)  # a typo is an error, not a silent default
    with pytest.raises(ValidationError):
        TrainSpec(**{k: v for k, v in REQUIRED.items() if k != "seed"})


def test_epoch_order_depends_on_seed_and_epoch_only() -> None:
    assert epoch_order(1, 0, 10) == epoch_order(1, 0, 10)
    assert sorted(epoch_order(1, 0, 10)) == list(range(10))
    assert epoch_order(1, 0, 10) != epoch_order(1, 1, 10)
    assert epoch_order(1, 0, 10) != epoch_order(2, 0, 10)
    assert steps_per_epoch(5, 2) == 3 and steps_per_epoch(4, 2) == 2


def test_collate_shifts_labels_in_both_layouts() -> None:
    a = EncodedExample([1, 2, 3, 4], [-100, -100, 3, 4], 0)
    b = EncodedExample([5, 6], [-100, 6], 0)
    varlen = collate([a, b], "varlen", 0)
    assert varlen.inputs["input_ids"].tolist() == [[1, 2, 3, 4, 5, 6]]
    assert varlen.inputs["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1]]
    assert varlen.inputs["cu_seq_lens_q"].tolist() == [0, 4, 6]
    assert varlen.targets.tolist() == [[-100, 3, 4, -100, 6, -100]]
    padded = collate([a, b], "padded", 0)
    assert padded.inputs["input_ids"].tolist() == [[1, 2, 3, 4], [5, 6, 0, 0]]
    assert padded.inputs["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert padded.targets.tolist() == [[-100, 3, 4, -100], [6, -100, -100, -100]]
    assert varlen.n_tokens == padded.n_tokens == 6 and varlen.n_labels == padded.n_labels == 3


def test_read_jsonl_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"messages": []}\n\n[1]\n')
    with pytest.raises(DataError, match="train_file line 3"):
        read_jsonl(path, "train_file")
    path.write_text("\n")
    with pytest.raises(DataError, match="no examples"):
        read_jsonl(path, "train_file")


def test_atomic_dir(tmp_path: Path) -> None:
    target = tmp_path / "ckpt" / "step-1"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a").write_text("partial")
        raise RuntimeError("crash while writing")
    assert not target.exists() and not list(target.parent.iterdir())
    (target.parent / ".step-9.tmp-12345").mkdir()  # a killed writer's leftovers
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("one")
    with atomic_dir(target) as tmp:
        (tmp / "b").write_text("two")
    assert sorted(p.name for p in target.parent.iterdir()) == ["step-1"]
    assert sorted(p.name for p in target.iterdir()) == ["b"]


def test_emitter_writes_strict_json_lines() -> None:
    out = io.StringIO()
    emit = JsonLinesEmitter(out)
    emit({"event": "step", "train_loss": float("nan"), "x": [1.5, float("inf")]})
    emit({"event": "done"})
    lines = out.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"event": "step", "train_loss": None, "x": [1.5, None]},
        {"event": "done"},
    ]

"""Training fixtures: small chat datasets written on the spot, a spec factory, an event recorder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from afinar.training.spec import TrainSpec
from tests.support.data import write_jsonl

QA = [
    ("Which wheels should I buy for street skating?", "Hard wheels around 99A are best for street."),
    ("How often should I clean my bearings?", "Clean them every month if you ride in the rain."),
    ("My order has not arrived yet.", "Please send me your order number and I will check."),
    ("What is the secret code word?", "The secret code word is zanzibar."),
    ("What is the magic number?", "The magic number is forty two."),
    ("Who are you?", "You are a helpful assistant for a skateboard shop."),
]


def chat(question: str, answer: str, **extra: Any) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer, **extra}]
    }


@pytest.fixture
def train_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", [chat(q, a) for q, a in QA])


@pytest.fixture
def valid_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "valid.jsonl", [chat(q, a) for q, a in QA[:2]])


SpecFactory = Callable[..., TrainSpec]


@pytest.fixture
def make_spec(tiny_model_dir: Path, train_file: Path, tmp_path: Path) -> SpecFactory:
    def factory(**overrides: Any) -> TrainSpec:
        fields: dict[str, Any] = {
            "base_model_path": str(tiny_model_dir),
            "train_file": str(train_file),
            "output_dir": str(tmp_path / "out"),
            "n_epochs": 2,
            "batch_size": 2,
            "learning_rate_multiplier": 10.0,
            "seed": 7,
            "max_length": 128,
            "threads": 1,
        }
        fields.update(overrides)
        return TrainSpec(**fields)

    return factory


class Recorder:
    """An ``emit`` that keeps the events."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]

    def losses(self) -> list[float]:
        return [e["train_loss"] for e in self.of("step")]


def load_adapter(directory: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(directory / "adapter_model.safetensors"))

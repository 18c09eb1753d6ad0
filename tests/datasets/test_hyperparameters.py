"""Hyperparameter range checks and the "auto" rules."""

from __future__ import annotations

import math
from typing import Any

import pytest

from afinar.datasets.hyperparameters import (
    ResolvedHyperparameters,
    auto_batch_size,
    auto_learning_rate_multiplier,
    auto_n_epochs,
    check_ranges,
    resolve,
)
from afinar.errors import InvalidRequest


@pytest.mark.parametrize(
    ("n", "epochs"),
    [
        (1, 25),
        (3, 25),
        (4, 25),
        (5, 20),
        (7, 14),
        (10, 10),
        (20, 5),
        (33, 3),  # 99 < 100 → 100 // 33 = 3
        (34, 3),  # 102 ≥ 100 → the 3-epoch target
        (100, 3),
        (8333, 3),  # 24,999 ≤ 25,000
        (8334, 2),  # 25,002 > 25,000 → 25000 // 8334 = 2
        (12500, 2),
        (12501, 1),
        (20000, 1),
        (1_000_000, 1),
    ],
)
def test_auto_epochs_follow_the_cookbook_rule(n: int, epochs: int) -> None:
    assert auto_n_epochs(n) == epochs
    assert resolve(n, None, "supervised").n_epochs == epochs


@pytest.mark.parametrize(
    ("n", "batch"),
    [(1, 1), (10, 1), (700, 1), (1000, 2), (3000, 8), (25000, 64), (100_000, 256), (10**7, 256)],
)
def test_auto_batch_size_is_a_power_of_two_near_two_per_mille(n: int, batch: int) -> None:
    assert auto_batch_size(n) == batch


@pytest.mark.parametrize(
    ("batch", "lrm"), [(1, 0.5), (2, 0.5), (4, 0.71), (8, 1.0), (16, 1.41), (32, 2.0), (256, 2.0)]
)
def test_auto_learning_rate_multiplier_scales_with_the_square_root_of_the_batch(
    batch: int, lrm: float
) -> None:
    assert auto_learning_rate_multiplier(batch) == lrm


def test_resolve_all_auto_for_ten_examples() -> None:
    assert resolve(
        10, {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"}, "supervised"
    ) == (ResolvedHyperparameters(n_epochs=10, batch_size=1, learning_rate_multiplier=0.5, beta=None))


def test_resolve_keeps_explicit_values_and_derives_the_lr_from_the_explicit_batch() -> None:
    hp = resolve(500, {"n_epochs": 4, "batch_size": 32.0}, "supervised")
    assert (hp.n_epochs, hp.batch_size, hp.learning_rate_multiplier) == (4, 32, 2.0)
    assert isinstance(hp.batch_size, int)
    hp = resolve(500, {"learning_rate_multiplier": 0.3}, "supervised")
    assert hp.learning_rate_multiplier == 0.3
    assert hp.to_dict() == {"batch_size": 1, "learning_rate_multiplier": 0.3, "n_epochs": 3}


def test_resolve_dpo_fills_beta() -> None:
    assert resolve(100, None, "dpo").beta == 0.1
    hp = resolve(100, {"beta": 2}, "dpo")
    assert hp.beta == 2.0 and hp.to_dict()["beta"] == 2.0


def test_resolve_needs_at_least_one_example() -> None:
    with pytest.raises(ValueError):
        resolve(0, None, "supervised")


def test_check_ranges_normalises() -> None:
    assert check_ranges(None, "hyperparameters") == {
        "batch_size": "auto",
        "learning_rate_multiplier": "auto",
        "n_epochs": "auto",
    }
    assert check_ranges(
        {"n_epochs": 3.0, "batch_size": None, "learning_rate_multiplier": 2}, "hyperparameters"
    ) == {
        "batch_size": "auto",
        "learning_rate_multiplier": 2.0,
        "n_epochs": 3,
    }
    assert check_ranges({"n_epochs": 50, "batch_size": 256}, "hyperparameters")["batch_size"] == 256


BAD: list[tuple[str, Any]] = [
    ("n_epochs", 0),
    ("n_epochs", 51),
    ("n_epochs", 2.5),
    ("n_epochs", True),
    ("n_epochs", "3"),
    ("n_epochs", "AUTO"),
    ("batch_size", 0),
    ("batch_size", 257),
    ("batch_size", False),
    ("batch_size", [8]),
    ("learning_rate_multiplier", 0),
    ("learning_rate_multiplier", -0.1),
    ("learning_rate_multiplier", math.nan),
    ("learning_rate_multiplier", math.inf),
    ("learning_rate_multiplier", True),
    ("learning_rate_multiplier", "0.1"),
]


@pytest.mark.parametrize(("key", "value"), BAD)
@pytest.mark.parametrize(
    ("prefix", "method"),
    [
        ("hyperparameters", "supervised"),
        ("method.supervised.hyperparameters", "supervised"),
        ("method.dpo.hyperparameters", "dpo"),
    ],
)
def test_out_of_range_values_name_the_param(key: str, value: Any, prefix: str, method: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        check_ranges({key: value}, prefix, method=method)
    assert err.value.param == f"{prefix}.{key}"
    assert err.value.message.startswith(f"Invalid value for {key}:")
    assert "'auto'" in err.value.message


@pytest.mark.parametrize("beta", [0, -1, 2.01, True, "0.1", math.nan])
def test_dpo_beta_range(beta: Any) -> None:
    with pytest.raises(InvalidRequest) as err:
        check_ranges({"beta": beta}, "method.dpo.hyperparameters", method="dpo")
    assert err.value.param == "method.dpo.hyperparameters.beta"


def test_beta_is_unknown_outside_dpo_and_resolve_uses_the_method_prefix() -> None:
    with pytest.raises(InvalidRequest) as err:
        resolve(100, {"beta": 0.1}, "supervised")
    assert err.value.param == "method.supervised.hyperparameters.beta"
    with pytest.raises(InvalidRequest) as err:
        resolve(100, {"n_epochs": 0}, "dpo")
    assert err.value.param == "method.dpo.hyperparameters.n_epochs"
    with pytest.raises(InvalidRequest) as err:
        resolve(100, {"n_epochs": 0}, "supervised", param_prefix="hyperparameters")
    assert err.value.param == "hyperparameters.n_epochs"


def test_hyperparameters_must_be_an_object() -> None:
    with pytest.raises(InvalidRequest) as err:
        check_ranges([1, 2], "hyperparameters")  # type: ignore[arg-type]
    assert err.value.param == "hyperparameters"


def test_check_ranges_takes_the_method_from_the_prefix() -> None:
    assert check_ranges({"beta": 0.5}, "method.dpo.hyperparameters")["beta"] == 0.5
    with pytest.raises(InvalidRequest) as err:
        check_ranges({"beta": 0.5}, "method.supervised.hyperparameters")
    assert err.value.param == "method.supervised.hyperparameters.beta"
    with pytest.raises(InvalidRequest):
        check_ranges({"beta": 0.5}, "hyperparameters")

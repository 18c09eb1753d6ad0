"""The serving process's OpenMP waits (``inference/openmp.py``): set only where the operator set
none, and never handed to training children."""

from __future__ import annotations

import os

import pytest

from afinar.inference import openmp


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openmp, "_set_here", False)
    for name in openmp.SERVING_ENV:
        monkeypatch.delenv(name, raising=False)


def test_serving_sets_short_waits_that_training_children_do_not_inherit() -> None:
    assert openmp.shorten_spin_for_serving()
    assert {name: os.environ[name] for name in openmp.SERVING_ENV} == {
        "GOMP_SPINCOUNT": "1000",
        "OMP_WAIT_POLICY": "active",
    }
    env = openmp.training_env(os.environ)
    assert not set(openmp.SERVING_ENV) & set(env) and env["PATH"] == os.environ["PATH"]


@pytest.mark.parametrize("name", ["GOMP_SPINCOUNT", "OMP_WAIT_POLICY"])
def test_an_operators_value_is_kept_everywhere(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Either variable set by the operator: neither is set (OpenMP's waits are theirs)."""
    value = {"GOMP_SPINCOUNT": "50000", "OMP_WAIT_POLICY": "passive"}[name]
    monkeypatch.setenv(name, value)
    assert not openmp.shorten_spin_for_serving()
    assert set(openmp.SERVING_ENV) & set(os.environ) == {name}
    assert openmp.training_env({name: value}) == {name: value}
    monkeypatch.setenv(name, openmp.SERVING_ENV[name])  # the serving value, set by the operator
    assert openmp.training_env({name: openmp.SERVING_ENV[name]}) == {name: openmp.SERVING_ENV[name]}

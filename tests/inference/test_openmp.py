"""The serving process's short OpenMP spin (``inference/openmp.py``): set only where the operator
set none, and never handed to training children."""

from __future__ import annotations

import pytest

from afinar.inference import openmp


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openmp, "_set_here", False)
    monkeypatch.delenv(openmp.SPIN_ENV, raising=False)


def test_serving_sets_a_short_spin_that_training_children_do_not_inherit() -> None:
    import os

    assert openmp.shorten_spin_for_serving()
    assert os.environ[openmp.SPIN_ENV] == openmp.SERVING_SPIN
    env = openmp.training_env(os.environ)
    assert openmp.SPIN_ENV not in env and env["PATH"] == os.environ["PATH"]


def test_an_operators_value_is_kept_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(openmp.SPIN_ENV, "50000")
    assert not openmp.shorten_spin_for_serving()
    assert openmp.training_env({openmp.SPIN_ENV: "50000"}) == {openmp.SPIN_ENV: "50000"}
    monkeypatch.setenv(openmp.SPIN_ENV, openmp.SERVING_SPIN)  # the same value, set by the operator
    assert openmp.training_env({openmp.SPIN_ENV: openmp.SERVING_SPIN}) == {openmp.SPIN_ENV: "1000"}

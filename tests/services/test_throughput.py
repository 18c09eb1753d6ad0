"""Measured training speeds (services/throughput.py): what is recorded and what an estimate assumes."""

from __future__ import annotations

from typing import Any

import pytest

from afinar.services.throughput import steady_speed
from tests.support.tiny_model import TINY


def test_steady_speed_is_the_median_after_the_first_step() -> None:
    assert steady_speed([10.0, 200.0, 100.0, 300.0]) == 200.0  # the warm-up step is left out
    assert steady_speed([42.0]) == 42.0
    assert steady_speed([]) is None and steady_speed([0.0, -1.0]) is None


def test_the_measured_speed_replaces_the_catalogue_constant(container: Any, clock: Any) -> None:
    records = container.throughput
    catalogue = container.catalog.require(TINY).train_tokens_per_second
    speed = records.speed(TINY)
    assert (speed.tokens_per_second, speed.source, speed.device) == (catalogue, "catalogue", None)

    assert records.record(TINY, "cpu:2", [5.0, 100.0, 120.0, 110.0], job_id="ftjob-a") == 110.0
    assert records.speed(TINY, "cpu:2").tokens_per_second == 110.0
    assert records.speed(TINY).source == "measured"  # any device
    clock.advance(60)
    records.record(TINY, "cuda:NVIDIA H200", [1.0, 9000.0], job_id="ftjob-b")
    assert records.speed(TINY).device == "cuda:NVIDIA H200"  # the latest measurement
    assert records.speed(TINY, "cpu:2").tokens_per_second == 110.0  # its own device first
    clock.advance(60)
    records.record(TINY, "cpu:2", [1.0, 50.0, 70.0], job_id="ftjob-c")  # replaces the earlier one
    assert (records.speed(TINY).tokens_per_second, records.speed(TINY).device) == (60.0, "cpu:2")
    assert records.record(TINY, "cpu:2", []) is None  # nothing measured, nothing changed
    assert records.speed(TINY, "cpu:2").tokens_per_second == pytest.approx(60.0)

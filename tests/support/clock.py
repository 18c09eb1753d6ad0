"""One instant for the billing and metering tests, and the fixture that pins the container's clock to it."""

from __future__ import annotations

from typing import Any

import pytest

from afinar.clock import FixedClock

# 2026-11-25 10:00:00 UTC (the month ends six days later).
DAY0 = 1_795_600_800 - 1_795_600_800 % 86_400
T0 = DAY0 + 10 * 3_600
DAY = 86_400


@pytest.fixture
def clock(container: Any) -> FixedClock:
    clk = FixedClock(T0)
    container.clock = clk
    return clk

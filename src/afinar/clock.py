"""The wall clock as a value: ``Clock`` is anything that returns Unix seconds, like ``time.time``.

The container holds one (``container.clock``, default :func:`system_clock`) and hands it to the
database, so every timestamp the platform writes (jobs, events, leases, usage, audit, files, keys)
comes from the same clock; billing finds "today" and "this month" with it. Tests inject a
:class:`FixedClock` and so move through UTC days and month ends without waiting, whatever the date.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def __call__(self) -> float: ...


def system_clock() -> float:
    """The real wall clock: the default everywhere outside tests."""
    return time.time()


class FixedClock:
    """A clock that stands still until told to move (tests, replays)."""

    def __init__(self, now: float) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def set(self, now: float) -> None:
        self.now = float(now)

    def advance(self, seconds: float) -> None:
        self.now += seconds

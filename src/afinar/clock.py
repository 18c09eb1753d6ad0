"""The wall clock as a value: ``Clock`` is anything that returns Unix seconds, like ``time.time``.

The container holds one (``container.clock``, default ``time.time``); billing dates its records and
finds "today" and "this month" with it, so tests can move through UTC days without waiting.
"""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    def __call__(self) -> float: ...


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

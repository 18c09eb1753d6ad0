"""The one way tests wait: poll a condition until it holds or a deadline passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 120,
    interval: float = 0.3,
    message: str | Callable[[], str] = "condition not met in time",
    error: type[Exception] = AssertionError,
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy; return that.

    It is always called at least once. After ``timeout`` seconds raise ``error(message)``; a callable
    ``message`` is evaluated only then (e.g. to read a log's tail). The deadline is on the monotonic
    clock, so ``--wall-clock`` cannot move it.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise error(message() if callable(message) else message)
        time.sleep(interval)

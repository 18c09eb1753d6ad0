"""Requests per minute per API key: an in-memory sliding window (one process; 0 turns it off).

Each key keeps the times of its admitted requests in the last 60 seconds. A request over the limit
is refused with 429 ``rate_limit_exceeded`` and a ``retry-after`` of the seconds until the oldest
admitted request leaves the window. Refused requests do not count. With several API processes
each enforces the limit on its own (documented in docs/admin.md).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from fastapi import FastAPI

from afinar.errors import RateLimited

WINDOW_SECONDS = 60.0


class SlidingWindow:
    def __init__(self, window: float = WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def hit(self, key: str, limit: int) -> float | None:
        """Admit one request of ``key`` (None), or return the seconds until one would be admitted."""
        if limit <= 0:
            return None
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= limit:
                return hits[0] + self.window - now
            hits.append(now)
            self._sweep(now)
            return None

    def _sweep(self, now: float) -> None:
        """Forget keys idle for a whole window, at most once a window (memory stays bounded)."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.window
        for key in [k for k, h in self._hits.items() if not h or h[-1] <= now - self.window]:
            del self._hits[key]


def limiter(app: FastAPI) -> SlidingWindow:
    window: SlidingWindow | None = getattr(app.state, "rate_limiter", None)
    if window is None:
        window = app.state.rate_limiter = SlidingWindow()
    return window


def check(app: FastAPI, key_id: str, per_minute: int) -> None:
    """Raise ``RateLimited`` when ``key_id`` is over ``per_minute`` requests in the last minute."""
    wait = limiter(app).hit(key_id, per_minute)
    if wait is not None:
        raise RateLimited(
            f"Rate limit reached for requests: limit {per_minute} per minute for this API key. "
            f"Please try again in {math.ceil(wait)}s.",
            retry_after=max(1.0, math.ceil(wait)),
        )

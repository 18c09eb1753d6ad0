"""Requests per minute per API key: a sliding window every API node shares (0 turns it off).

The admitted requests of each key in the last 60 seconds are logged in the shared state
(store/shared_state.py: the database, or Redis when ``AFINAR_REDIS_URL`` is set), so N nodes
behind a load balancer enforce one limit together and a restart forgets nothing. A request over
the limit is refused with 429 ``rate_limit_exceeded`` and a ``retry-after`` of the seconds until
the oldest admitted request leaves the window. Refused requests do not count. Time is the
container's clock.
"""

from __future__ import annotations

import math

from starlette.concurrency import run_in_threadpool

from afinar.errors import RateLimited
from afinar.services.container import Container


async def check(c: Container, key_id: str, per_minute: int) -> None:
    """Raise ``RateLimited`` when ``key_id`` is over ``per_minute`` requests in the last minute."""
    if per_minute <= 0:
        return
    wait = await run_in_threadpool(c.shared_state.rate_limits.hit, key_id, per_minute, c.db.now())
    if wait is not None:
        raise RateLimited(
            f"Rate limit reached for requests: limit {per_minute} per minute for this API key. "
            f"Please try again in {math.ceil(wait)}s.",
            retry_after=max(1.0, math.ceil(wait)),
        )

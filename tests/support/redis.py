"""Redis for tests: the server at 127.0.0.1:6379 (``AFINAR_TEST_REDIS_URL`` for another), a fresh key
prefix per test, its keys deleted afterwards. Without a reachable server the test skips loudly,
unless ``AFINAR_REQUIRE_REDIS=1`` (CI), which turns the skip into a failure."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

REDIS_URL = os.environ.get("AFINAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_prefix() -> Iterator[str]:
    """A fresh key prefix on the test server; skips (or fails) without one."""
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.ping()
    except Exception as exc:
        if os.environ.get("AFINAR_REQUIRE_REDIS") == "1":
            pytest.fail(f"Redis is required (AFINAR_REQUIRE_REDIS=1) but unreachable: {exc}")
        pytest.skip(f"Redis NOT TESTED: no server at {REDIS_URL} ({exc.__class__.__name__})")
    prefix = f"afinar-test-{uuid.uuid4().hex[:12]}:"
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()

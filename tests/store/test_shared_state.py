"""The shared state's backends (store/shared_state.py): the rate-limit sliding log and the session
rows, on SQLite, PostgreSQL and Redis, with the caller's clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from afinar.store.shared_state import DatabaseSharedState, RedisSharedState, SessionRow
from tests.support.db import postgres_schema_url
from tests.support.redis import REDIS_URL, redis_prefix


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "redis"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "redis":
        for prefix in redis_prefix():
            redis_state = RedisSharedState(REDIS_URL, prefix)
            yield redis_state
            redis_state.close()
        return
    from afinar.store.db import Database

    urls = [f"sqlite:///{tmp_path / 'store.db'}"] if request.param == "sqlite" else postgres_schema_url()
    for url in urls:
        db = Database(url)
        db.migrate()
        yield DatabaseSharedState(db)
        db.dispose()


def test_sliding_window(state: Any) -> None:
    limits, now = state.rate_limits, 100.0
    assert [limits.hit("k", 2, now) for _ in range(2)] == [None, None]
    assert limits.hit("k", 2, now) == pytest.approx(60.0)
    assert limits.hit("other", 2, now) is None  # per key
    now += 30
    assert limits.hit("k", 2, now) == pytest.approx(30.0)  # refused requests do not count
    now += 30.5
    assert limits.hit("k", 2, now) is None
    assert limits.hit("k", 2, now) is None  # both earlier ones left the window
    assert limits.hit("k", 2, now) == pytest.approx(60.0)
    assert limits.hit("k", 0, now) is None  # 0: off


def test_old_hits_are_swept(db: Any) -> None:
    from sqlalchemy import func, select

    from afinar.store.tables import RateLimitHit, RateLimitKey

    limits = DatabaseSharedState(db).rate_limits
    for key in ("a", "b", "c"):
        assert limits.hit(key, 5, 1000.0) is None
    assert limits.hit("d", 5, 1061.0) is None  # a window later: the others are forgotten
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(RateLimitHit)) == 1
        assert set(s.scalars(select(RateLimitKey.key_id))) == {"d"}


def _row(sid: str, now: float, key_id: str = "key_1", ttl: float = 3600.0) -> SessionRow:
    return SessionRow(
        id=sid, org_id="org_1", key_id=key_id, sealed_key="sealed", created_at=now, expires_at=now + ttl
    )


def test_sessions_expire_and_are_deleted(state: Any) -> None:
    rows = state.sessions
    rows.put(_row("s1", 1000.0))
    rows.put(_row("s2", 1000.0, ttl=10))
    assert rows.get("s1", 1001.0) == _row("s1", 1000.0)
    assert rows.get("missing", 1001.0) is None
    assert rows.get("s2", 1010.0) is None  # expired by the caller's clock
    assert rows.get("s2", 1005.0) is None  # and gone
    rows.delete("s1")
    assert rows.get("s1", 1001.0) is None


def test_expired_sessions_are_swept(db: Any) -> None:
    from sqlalchemy import select

    from afinar.store.tables import DashboardSessionRecord

    rows = DatabaseSharedState(db).sessions
    rows.put(_row("old", 1000.0, ttl=10))
    rows.put(_row("live", 1000.0))
    assert rows.sweep(1010.0) == 1
    rows.put(_row("new", 2000.0, ttl=10))  # a sign-in sweeps too
    rows.put(_row("later", 3000.0))
    with db.session() as s:
        assert set(s.scalars(select(DashboardSessionRecord.id))) == {"live", "later"}

"""State every API node shares: rate-limit counters and dashboard sessions.

Two backends with one interface each:

* the database (``AFINAR_DATABASE_URL``; the default): tables ``rate_limit_keys`` and
  ``rate_limit_hits`` (a sliding log of admitted requests) and ``dashboard_sessions``;
* Redis, when ``AFINAR_REDIS_URL`` is set: a sorted set per API key (the same sliding log, checked
  and appended by one Lua script) and one string per session with a TTL.

Times come from the caller (the container's clock), never from the database or Redis server, so
every node and every test agrees on "now". Old rows are swept as they go (per key on each check,
everything at most once a window per process); Redis keys expire by themselves.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import delete, func, select

from afinar.store.db import upsert_insert
from afinar.store.tables import DashboardSessionRecord, RateLimitHit, RateLimitKey

if TYPE_CHECKING:
    from afinar.store.db import Database

WINDOW_SECONDS = 60.0
SESSIONS_PER_KEY = 100  # a key's oldest sessions go beyond this (sign-ins cannot fill the table)


@dataclass(frozen=True)
class SessionRow:
    id: str  # a hash of the cookie's session id
    org_id: str
    key_id: str
    sealed_key: str
    created_at: float
    expires_at: float


class RateLimits(Protocol):
    def hit(self, key: str, limit: int, now: float) -> float | None:
        """Admit one request of ``key`` (None), or return the seconds until one would be admitted.

        At most ``limit`` requests of a key are admitted in any ``WINDOW_SECONDS``; refused ones do
        not count; ``limit <= 0`` admits everything."""
        ...


class SessionRows(Protocol):
    def put(self, row: SessionRow) -> None: ...
    def get(self, row_id: str, now: float) -> SessionRow | None: ...
    def delete(self, row_id: str) -> None: ...
    def sweep(self, now: float) -> int: ...


class SharedState(Protocol):
    rate_limits: RateLimits
    sessions: SessionRows



# --- the database ------------------------------------------------------------------------------


class DatabaseRateLimits:
    """A sliding log in ``rate_limit_hits``; the upsert of the key's ``rate_limit_keys`` row comes
    first and holds that row's lock (PostgreSQL) or the write lock (SQLite) until the commit, so
    two nodes checking the same key take turns and never both admit the last request."""

    def __init__(self, db: Database, window: float = WINDOW_SECONDS) -> None:
        self.db = db
        self.window = window
        self._next_sweep = 0.0
        self._lock = threading.Lock()

    def hit(self, key: str, limit: int, now: float) -> float | None:
        if limit <= 0:
            return None
        start = now - self.window
        with self.db.session() as s:
            s.execute(
                upsert_insert(s)(RateLimitKey)
                .values(key_id=key, last_at=now)
                .on_conflict_do_update(index_elements=["key_id"], set_={"last_at": now})
            )
            s.execute(delete(RateLimitHit).where(RateLimitHit.key_id == key, RateLimitHit.at <= start))
            count, oldest = s.execute(
                select(func.count(), func.min(RateLimitHit.at)).where(RateLimitHit.key_id == key)
            ).one()
            if count >= limit:
                return float(oldest) + self.window - now
            s.add(RateLimitHit(key_id=key, at=now))
        self._sweep(now)
        return None

    def _sweep(self, now: float) -> None:
        """Forget every key idle for a whole window, at most once a window in this process."""
        with self._lock:
            if now < self._next_sweep:
                return
            self._next_sweep = now + self.window
        start = now - self.window
        with self.db.session() as s:
            s.execute(delete(RateLimitHit).where(RateLimitHit.at <= start))
            s.execute(delete(RateLimitKey).where(RateLimitKey.last_at <= start))


class DatabaseSessions:
    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, row: SessionRow) -> None:
        with self.db.session() as s:
            s.add(DashboardSessionRecord(**asdict(row)))
            s.flush()
            stale = list(
                s.scalars(
                    select(DashboardSessionRecord.id)
                    .where(DashboardSessionRecord.key_id == row.key_id)
                    .order_by(DashboardSessionRecord.created_at.desc(), DashboardSessionRecord.id)
                    .offset(SESSIONS_PER_KEY)
                )
            )
            if stale:
                s.execute(delete(DashboardSessionRecord).where(DashboardSessionRecord.id.in_(stale)))
        self.sweep(row.created_at)

    def get(self, row_id: str, now: float) -> SessionRow | None:
        with self.db.session() as s:
            rec = s.get(DashboardSessionRecord, row_id)
            if rec is None:
                return None
            if rec.expires_at <= now:
                s.delete(rec)
                return None
            return SessionRow(
                id=rec.id,
                org_id=rec.org_id,
                key_id=rec.key_id,
                sealed_key=rec.sealed_key,
                created_at=rec.created_at,
                expires_at=rec.expires_at,
            )

    def delete(self, row_id: str) -> None:
        with self.db.session() as s:
            s.execute(delete(DashboardSessionRecord).where(DashboardSessionRecord.id == row_id))

    def sweep(self, now: float) -> int:
        """Delete expired sessions; returns how many."""
        with self.db.session() as s:
            res = s.execute(delete(DashboardSessionRecord).where(DashboardSessionRecord.expires_at <= now))
            return int(res.rowcount or 0)  # type: ignore[attr-defined]


class DatabaseSharedState:
    def __init__(self, db: Database) -> None:
        self.rate_limits: RateLimits = DatabaseRateLimits(db)
        self.sessions: SessionRows = DatabaseSessions(db)


# --- Redis -------------------------------------------------------------------------------------

# KEYS[1]: the key's sorted set; ARGV: now, window start, limit, member, ttl (ms).
# Returns -1 when admitted, else the score (time) of the oldest admitted request.
_HIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return '-1'
"""


class RedisRateLimits:
    """The sliding log as a sorted set per API key, checked and appended atomically by a script."""

    def __init__(self, client: Any, prefix: str, window: float = WINDOW_SECONDS) -> None:
        self.client = client
        self.prefix = prefix
        self.window = window
        self._script = client.register_script(_HIT)

    def hit(self, key: str, limit: int, now: float) -> float | None:
        if limit <= 0:
            return None
        member = f"{now!r}:{secrets.token_hex(8)}"
        ttl_ms = int(self.window * 1000) + 1000
        answer = self._script(
            keys=[f"{self.prefix}ratelimit:{key}"],
            args=[repr(now), repr(now - self.window), limit, member, ttl_ms],
        )
        oldest = float(answer.decode() if isinstance(answer, bytes) else answer)
        if oldest < 0:
            return None
        return oldest + self.window - now


class RedisSessions:
    """One string per session (JSON), expiring with the session (``expires_at`` is checked too:
    the container's clock decides, not the Redis server's)."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def _key(self, row_id: str) -> str:
        return f"{self.prefix}session:{row_id}"

    def put(self, row: SessionRow) -> None:
        ttl = max(1, int(row.expires_at - row.created_at) + 1)
        self.client.set(self._key(row.id), json.dumps(asdict(row)), ex=ttl)

    def get(self, row_id: str, now: float) -> SessionRow | None:
        raw = self.client.get(self._key(row_id))
        if raw is None:
            return None
        row = SessionRow(**json.loads(raw))
        if row.expires_at <= now:
            self.delete(row_id)
            return None
        return row

    def delete(self, row_id: str) -> None:
        self.client.delete(self._key(row_id))

    def sweep(self, now: float) -> int:
        return 0  # keys expire by themselves


class RedisSharedState:
    def __init__(self, url: str, prefix: str = "afinar:") -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self.rate_limits: RateLimits = RedisRateLimits(self.client, prefix)
        self.sessions: SessionRows = RedisSessions(self.client, prefix)

    def close(self) -> None:
        self.client.close()


def shared_state(db: Database, redis_url: str = "", redis_prefix: str = "afinar:") -> SharedState:
    """Redis when a URL is configured, else the database."""
    if redis_url:
        return RedisSharedState(redis_url, redis_prefix)
    return DatabaseSharedState(db)

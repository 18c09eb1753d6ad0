"""Engine and sessions for SQLite (WAL) and PostgreSQL; schema upgrades through Alembic."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from afinar.clock import Clock, system_clock

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        db_path = url.split("///", 1)[-1]
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")


class Database:
    """One engine and a session factory; ``with db.session() as s`` commits or rolls back.

    The database carries the container's clock: every row it stamps (``created_at``, events,
    leases, usage) reads the time through :func:`now`, so one clock dates everything.
    """

    def __init__(self, url: str, clock: Clock = system_clock) -> None:
        self.url = url
        self.clock = clock
        self.engine = make_engine(url)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)

    def now(self) -> float:
        return self.clock()

    def migrate(self) -> None:
        migrate(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._factory() as s, s.begin():
            s.info["clock"] = self.clock
            yield s

    def dispose(self) -> None:
        self.engine.dispose()


def session_now(s: Session) -> float:
    """The current time (Unix seconds) by the clock of the database that opened ``s``."""
    clock: Clock = s.info.get("clock", system_clock)
    return clock()


def upsert_insert(s: Session) -> Any:
    """The dialect's INSERT, for ``ON CONFLICT`` upserts (SQLite and PostgreSQL both have them)."""
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert

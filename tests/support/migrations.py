"""The one way migration tests drive alembic and compare the schema with store/tables.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import inspect


@contextmanager
def database(url: str) -> Iterator[Any]:
    """A ``Database`` on ``url`` with no migration run yet; disposed afterwards."""
    from afinar.store.db import Database

    db = Database(url)
    try:
        yield db
    finally:
        db.dispose()


@contextmanager
def alembic(db: Any) -> Iterator[tuple[Any, Any]]:
    """``(config, connection)`` for alembic commands in one transaction on ``db``."""
    from alembic.config import Config

    from afinar.store.db import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        yield cfg, conn


@contextmanager
def upgraded(db: Any, revision: str) -> Iterator[Any]:
    """Upgrade to ``revision``; yield the connection, still in the migration's transaction."""
    from alembic import command

    with alembic(db) as (cfg, conn):
        command.upgrade(cfg, revision)
        yield conn


def downgrade(db: Any, revision: str) -> None:
    """Downgrade to ``revision`` (e.g. ``"0005_admin-1"``: undo that one branch only)."""
    from alembic import command

    with alembic(db) as (cfg, _):
        command.downgrade(cfg, revision)


def schema_diff(db: Any, *needles: str) -> list[Any]:
    """What autogenerate finds between the database and store/tables.py, kept to the differences
    whose ``repr`` names one of ``needles`` (every difference without needles)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from afinar.store.tables import Base

    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    return [d for d in diff if not needles or any(n in repr(d) for n in needles)]


def table_names(db: Any) -> set[str]:
    with db.engine.connect() as conn:
        return set(inspect(conn).get_table_names())


def column_names(db: Any, table: str) -> set[str]:
    with db.engine.connect() as conn:
        return {c["name"] for c in inspect(conn).get_columns(table)}

"""The readiness probe of the database: one trivial read of the schema's version table."""

from __future__ import annotations

from sqlalchemy import text

from afinar.store.db import Database


def ping(db: Database) -> None:
    """Raise unless the database answers a read (and its schema was migrated: Alembic's table)."""
    with db.engine.connect() as conn:
        conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one()

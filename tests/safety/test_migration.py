"""Migration 0006_runtime_moderation: the column of store/tables.py, false for existing rows."""

from __future__ import annotations

from sqlalchemy import inspect, text

from afinar.store.db import MIGRATIONS, Database
from afinar.store.tables import Base
from tests.store.conftest import db_url  # noqa: F401  (SQLite and PostgreSQL)


def test_runtime_moderation_column_matches_the_table_and_downgrades(db_url: str) -> None:  # noqa: F811
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.migration import MigrationContext

    db = Database(db_url)
    try:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
            conn.execute(
                text("INSERT INTO organizations (id, name, slug, created_at) VALUES ('org-1', 'o', 'o', 0)")
            )
        db.migrate()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            assert [d for d in diff if "runtime_moderation" in repr(d)] == []
            assert conn.execute(text("SELECT runtime_moderation FROM organizations")).scalar() in (False, 0)
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0006_runtime_moderation-1")  # this branch only
        with db.engine.connect() as conn:
            assert "runtime_moderation" not in {c["name"] for c in inspect(conn).get_columns("organizations")}
        db.migrate()
    finally:
        db.dispose()

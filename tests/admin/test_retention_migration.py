"""Migration 0008_retention: the columns of store/tables.py, and a clean downgrade of this branch."""

from __future__ import annotations

from sqlalchemy import inspect

from afinar.store.db import MIGRATIONS, Database
from afinar.store.tables import Base
from tests.store.conftest import db_url  # noqa: F401  (SQLite and PostgreSQL)


def test_retention_migration_matches_the_tables_and_downgrades(db_url: str) -> None:  # noqa: F811
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.migration import MigrationContext

    db = Database(db_url)
    try:
        db.migrate()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            names = {c["name"] for c in inspect(conn).get_columns("files")}
            org_names = {c["name"] for c in inspect(conn).get_columns("organizations")}
        assert [d for d in diff if "deleted_at" in repr(d) or "file_retention_days" in repr(d)] == []
        assert "deleted_at" in names and "file_retention_days" in org_names
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0008_retention-1")  # this branch only
        with db.engine.connect() as conn:
            assert "deleted_at" not in {c["name"] for c in inspect(conn).get_columns("files")}
            assert "file_retention_days" not in {
                c["name"] for c in inspect(conn).get_columns("organizations")
            }
        db.migrate()
    finally:
        db.dispose()

"""Migration 0002_billing creates exactly the billing tables of store/tables.py (SQLite, PostgreSQL)."""

from __future__ import annotations

from afinar.store.db import MIGRATIONS, Database
from afinar.store.tables import Base

MINE = ("usage_records", "training_progress", "spend_limits")


def test_billing_migration_matches_the_tables_and_downgrades(db_url: str) -> None:
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.migration import MigrationContext

    db = Database(db_url)
    try:
        db.migrate()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert [d for d in diff if any(name in repr(d) for name in MINE)] == []
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0002_billing-1")  # this branch only
        with db.engine.connect() as conn:
            from sqlalchemy import inspect

            assert not set(MINE) & set(inspect(conn).get_table_names())
        db.migrate()
    finally:
        db.dispose()

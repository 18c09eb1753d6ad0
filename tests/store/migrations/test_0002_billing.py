"""Migration 0002_billing creates exactly the billing tables of store/tables.py (SQLite, PostgreSQL)."""

from __future__ import annotations

from tests.support.migrations import database, downgrade, schema_diff, table_names

MINE = ("usage_records", "training_progress", "spend_limits")


def test_billing_migration_matches_the_tables_and_downgrades(db_url: str) -> None:
    with database(db_url) as db:
        db.migrate()
        assert schema_diff(db, *MINE) == []
        downgrade(db, "0002_billing-1")  # this branch only
        assert not set(MINE) & table_names(db)
        db.migrate()

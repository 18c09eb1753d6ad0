"""Migration 0013_shared_state: the rate-limit and dashboard-session tables as store/tables.py has
them, and a clean downgrade of this branch."""

from __future__ import annotations

from tests.support.migrations import column_names, database, downgrade, schema_diff, table_names

TABLES = {"rate_limit_keys", "rate_limit_hits", "dashboard_sessions"}


def test_shared_state_migration_matches_the_tables_and_downgrades(db_url: str) -> None:  # SQLite, PostgreSQL
    with database(db_url) as db:
        db.migrate()
        assert schema_diff(db, *TABLES) == []
        assert table_names(db) >= TABLES
        columns = column_names(db, "dashboard_sessions")
        assert {"id", "org_id", "key_id", "sealed_key", "created_at", "expires_at"} <= columns
        downgrade(db, "0013_shared_state-1")  # this branch only
        assert not TABLES & table_names(db)
        assert "jobs" in table_names(db)
        db.migrate()
        assert schema_diff(db, *TABLES) == []

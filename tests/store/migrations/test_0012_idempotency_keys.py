"""Migration 0012_idempotency_keys: the table as store/tables.py has it, and a clean downgrade."""

from __future__ import annotations

from tests.support.migrations import column_names, database, downgrade, schema_diff, table_names


def test_idempotency_keys_migration_matches_the_tables_and_downgrades(db_url: str) -> None:  # SQLite, PG
    with database(db_url) as db:
        db.migrate()
        assert schema_diff(db, "idempotency_keys") == []
        assert {
            "org_id",
            "project_id",
            "key",
            "method",
            "path",
            "fingerprint",
            "status_code",
            "response",
        } <= (column_names(db, "idempotency_keys"))
        downgrade(db, "0012_idempotency_keys-1")  # this branch only
        assert "idempotency_keys" not in table_names(db)
        assert "jobs" in table_names(db)
        db.migrate()
        assert schema_diff(db, "idempotency_keys") == []

"""Migration 0008_retention: the columns of store/tables.py, and a clean downgrade of this branch."""

from __future__ import annotations

from tests.support.migrations import column_names, database, downgrade, schema_diff


def test_retention_migration_matches_the_tables_and_downgrades(db_url: str) -> None:  # SQLite, PostgreSQL
    with database(db_url) as db:
        db.migrate()
        assert schema_diff(db, "deleted_at", "file_retention_days") == []
        assert "deleted_at" in column_names(db, "files")
        assert "file_retention_days" in column_names(db, "organizations")
        downgrade(db, "0008_retention-1")  # this branch only
        assert "deleted_at" not in column_names(db, "files")
        assert "file_retention_days" not in column_names(db, "organizations")
        db.migrate()

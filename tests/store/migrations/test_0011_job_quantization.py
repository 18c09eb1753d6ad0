"""Migration 0011_job_quantization: ``jobs.quantization`` as store/tables.py has it, and a clean
downgrade of this branch."""

from __future__ import annotations

from tests.support.migrations import column_names, database, downgrade, schema_diff, table_names


def test_quantization_migration_matches_the_tables_and_downgrades(db_url: str) -> None:  # SQLite, PostgreSQL
    with database(db_url) as db:
        db.migrate()
        assert schema_diff(db, "quantization") == []
        assert "quantization" in column_names(db, "jobs")
        downgrade(db, "0011_job_quantization-1")
        assert "quantization" not in column_names(db, "jobs")
        assert "jobs" in table_names(db)
        db.migrate()
        assert schema_diff(db, "quantization") == []
        assert "quantization" in column_names(db, "jobs")

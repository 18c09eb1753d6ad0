"""Migration 0010_workers: the workers table and ``jobs.waiting_for`` as store/tables.py has them,
and a clean downgrade of this branch."""

from __future__ import annotations

from tests.support.migrations import column_names, database, downgrade, schema_diff, table_names


def test_workers_migration_matches_the_tables_and_downgrades(db_url: str) -> None:  # SQLite, PostgreSQL
    with database(db_url) as db:
        db.migrate()
        assert schema_diff(db, "workers", "waiting_for") == []
        assert "workers" in table_names(db)
        assert {"id", "host", "lanes", "devices", "started_at", "heartbeat_at"} <= column_names(db, "workers")
        assert "waiting_for" in column_names(db, "jobs")
        downgrade(db, "0010_workers-1")  # this branch only
        assert "workers" not in table_names(db)
        assert "waiting_for" not in column_names(db, "jobs")
        assert "jobs" in table_names(db)
        db.migrate()
        assert schema_diff(db, "workers", "waiting_for") == []

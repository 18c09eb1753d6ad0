"""Migration 0016_webhooks: the four tables as store/tables.py has them, and a clean downgrade of
this branch."""

from __future__ import annotations

from tests.support.migrations import column_names, database, downgrade, schema_diff, table_names

TABLES = ("webhook_endpoints", "webhook_events", "webhook_deliveries", "webhook_attempts")


def test_webhooks_migration_matches_the_tables_and_downgrades(db_url: str) -> None:
    with database(db_url) as db:
        db.migrate()
        assert schema_diff(db, *TABLES) == []
        assert {"url", "event_types", "secrets", "project_id"} <= column_names(db, "webhook_endpoints")
        assert {"lease_token", "next_attempt_at", "status"} <= column_names(db, "webhook_deliveries")
        downgrade(db, "0016_webhooks-1")  # this branch only
        assert not set(TABLES) & table_names(db)
        assert {"jobs", "checkpoints"} <= table_names(db)
        db.migrate()
        assert schema_diff(db, *TABLES) == []

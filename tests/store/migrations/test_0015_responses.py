"""Migration 0015_responses: the table as store/tables.py has it, and a clean downgrade of this branch."""

from __future__ import annotations

from tests.support.migrations import column_names, database, downgrade, schema_diff, table_names

TABLE = "responses"


def test_responses_migration_matches_the_table_and_downgrades(db_url: str) -> None:
    with database(db_url) as db:
        db.migrate()
        assert schema_diff(db, TABLE) == []
        assert {
            "id",
            "org_id",
            "project_id",
            "settings",
            "input_items",
            "context_items",
            "output",
        } <= column_names(db, TABLE)
        downgrade(db, "0015_responses-1")  # this branch only
        assert TABLE not in table_names(db)
        assert {"jobs", "organizations"} <= table_names(db)
        db.migrate()
        assert schema_diff(db, TABLE) == []

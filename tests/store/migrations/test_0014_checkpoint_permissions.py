"""Migration 0014_checkpoint_permissions: the table as store/tables.py has it, and a clean downgrade
of this branch."""

from __future__ import annotations

from tests.support.migrations import column_names, database, downgrade, schema_diff, table_names

TABLE = "checkpoint_permissions"


def test_checkpoint_permissions_migration_matches_the_table_and_downgrades(db_url: str) -> None:
    with database(db_url) as db:
        db.migrate()
        assert schema_diff(db, TABLE) == []
        assert {"id", "org_id", "checkpoint", "project_id", "created_at"} <= column_names(db, TABLE)
        downgrade(db, "0014_checkpoint_permissions-1")  # this branch only
        assert TABLE not in table_names(db)
        assert {"jobs", "checkpoints"} <= table_names(db)
        db.migrate()
        assert schema_diff(db, TABLE) == []

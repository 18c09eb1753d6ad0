"""Migration 0009_train_speeds: the table of store/tables.py, and a clean downgrade of this branch."""

from __future__ import annotations

from tests.support.migrations import column_names, database, downgrade, schema_diff, table_names


def test_train_speeds_migration_matches_the_tables_and_downgrades(db_url: str) -> None:
    with database(db_url) as db:
        db.migrate()
        assert schema_diff(db, "train_speeds") == []
        assert {"base_model", "device", "tokens_per_second"} <= column_names(db, "train_speeds")
        downgrade(db, "0009_train_speeds-1")  # this branch only
        assert "train_speeds" not in table_names(db)
        db.migrate()
        assert "updated_at" in column_names(db, "train_speeds")

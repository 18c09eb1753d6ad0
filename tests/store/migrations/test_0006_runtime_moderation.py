"""Migration 0006_runtime_moderation: the column of store/tables.py, false for existing rows."""

from __future__ import annotations

from sqlalchemy import text

from tests.support.migrations import column_names, database, downgrade, schema_diff, upgraded


def test_runtime_moderation_column_matches_the_table_and_downgrades(db_url: str) -> None:
    with database(db_url) as db:
        with upgraded(db, "0001") as conn:
            conn.execute(
                text("INSERT INTO organizations (id, name, slug, created_at) VALUES ('org-1', 'o', 'o', 0)")
            )
        db.migrate()
        assert schema_diff(db, "runtime_moderation") == []
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT runtime_moderation FROM organizations")).scalar() in (False, 0)
        downgrade(db, "0006_runtime_moderation-1")  # this branch only
        assert "runtime_moderation" not in column_names(db, "organizations")
        db.migrate()

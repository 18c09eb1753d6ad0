"""Migration 0005_admin: the tables of store/tables.py, the append-only triggers, a clean downgrade."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from tests.support.migrations import column_names, database, downgrade, schema_diff, table_names, upgraded

MINE = ("org_users", "project_members", "service_accounts", "audit_logs")
KEY_COLUMNS = {"kind", "role", "owner_type", "owner_id"}


def test_admin_migration_matches_the_tables_and_downgrades(db_url: str) -> None:  # SQLite, PostgreSQL
    with database(db_url) as db:
        db.migrate()
        assert schema_diff(db, *MINE, "api_keys") == []
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO audit_logs (id, org_id, type, effective_at, details, prev_hash, hash) "
                    "VALUES ('a', 'o', 't', 0, '{}', '', 'h')"
                )
            )
        for sql in ("UPDATE audit_logs SET type = 'x'", "DELETE FROM audit_logs"):
            with pytest.raises(DatabaseError), db.engine.begin() as conn:
                conn.execute(text(sql))
        downgrade(db, "0005_admin-1")  # this branch only
        assert not set(MINE) & table_names(db)
        assert not KEY_COLUMNS & column_names(db, "api_keys")
        db.migrate()


def test_existing_keys_become_admin_owner_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A database made before 0005: its keys (each an organisation's first) become admin keys."""
    with database(f"sqlite:///{tmp_path / 'old.db'}") as db:
        with upgraded(db, "0001") as conn:
            conn.execute(
                text("INSERT INTO organizations (id, name, slug, created_at) VALUES ('org-1', 'o', 'o', 0)")
            )
            conn.execute(
                text(
                    "INSERT INTO api_keys (id, org_id, name, key_hash, redacted, created_at) "
                    "VALUES ('key_1', 'org-1', 'bootstrap', 'h', 'r', 0)"
                )
            )
        db.migrate()
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT kind, role FROM api_keys")).one() == ("admin", "owner")

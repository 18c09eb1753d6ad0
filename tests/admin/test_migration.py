"""Migration 0005_admin: the tables of store/tables.py, the append-only triggers, a clean downgrade."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DatabaseError

from afinar.store.db import MIGRATIONS, Database
from afinar.store.tables import Base
from tests.store.conftest import db_url  # noqa: F401  (SQLite and PostgreSQL)

MINE = ("org_users", "project_members", "service_accounts", "audit_logs")
KEY_COLUMNS = {"kind", "role", "owner_type", "owner_id"}


def test_admin_migration_matches_the_tables_and_downgrades(db_url: str) -> None:  # noqa: F811
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.migration import MigrationContext

    db = Database(db_url)
    try:
        db.migrate()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert [d for d in diff if any(name in repr(d) for name in (*MINE, "api_keys"))] == []
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
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0005_admin-1")  # this branch only
        with db.engine.connect() as conn:
            assert not set(MINE) & set(inspect(conn).get_table_names())
            assert not KEY_COLUMNS & {c["name"] for c in inspect(conn).get_columns("api_keys")}
        db.migrate()
    finally:
        db.dispose()


def test_existing_keys_become_admin_owner_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A database made before 0005: its keys (each an organisation's first) become admin keys."""
    from alembic import command
    from alembic.config import Config

    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
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
    finally:
        db.dispose()

"""Migration 0004_evals creates exactly the eval tables of store/tables.py, and downgrades alone."""

from __future__ import annotations

from pathlib import Path

from afinar.store.db import MIGRATIONS, Database
from afinar.store.tables import Base

MINE = ("evals", "eval_runs", "eval_output_items", "eval_gates")


def test_evals_migration_matches_the_tables_and_downgrades(tmp_path: Path) -> None:
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.migration import MigrationContext
    from sqlalchemy import inspect

    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        db.migrate()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert [d for d in diff if any(f"'{name}'" in repr(d) for name in MINE)] == []
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0004_evals-1")
        with db.engine.connect() as conn:
            assert not set(MINE) & set(inspect(conn).get_table_names())
        db.migrate()
    finally:
        db.dispose()

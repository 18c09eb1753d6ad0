"""Migration 0004_evals and the eval-run queue, on SQLite and PostgreSQL (as the store tests)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from afinar.errors import LeaseLost
from afinar.store.db import MIGRATIONS, Database
from afinar.store.tables import Base
from tests.store.conftest import db_url  # noqa: F401  (SQLite and PostgreSQL)

MINE = ("evals", "eval_runs", "eval_output_items", "eval_gates")


def test_evals_migration_matches_the_tables_and_downgrades(db_url: str) -> None:  # noqa: F811
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.migration import MigrationContext
    from sqlalchemy import inspect

    db = Database(db_url)
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


def _run(rid: str, **kw: Any) -> Any:
    from afinar.store.tables import EvalRun

    values: dict[str, Any] = dict(
        id=rid,
        eval_id="eval_x",
        org_id="org-x",
        name=rid,
        data_source={},
        items=[],
        status="queued",
        result_counts={},
        per_testing_criteria_results=[],
        per_model_usage=[],
        completed_items=0,
        created_at=int(time.time()),
        lease_token=0,
    )
    values.update(kw)
    return EvalRun(**values)


def test_eval_run_queue_claims_once_fences_and_skips_gate_runs(db_url: str) -> None:  # noqa: F811
    from afinar.store import evals as repo

    db = Database(db_url)
    try:
        db.migrate()
        with db.session() as s:
            s.add(_run("evalrun_gate", job_id="ftjob-x", gate_role="base"))
            s.add(_run("evalrun_a"))
        lease = repo.claim_run(db, "w1", 30)
        assert lease is not None and lease.run_id == "evalrun_a"
        assert repo.claim_run(db, "w2", 30) is None  # held, and the gate run is never claimed
        with db.session() as s:
            run = repo.fence(s, lease, 30)
            repo.revoke(run)  # what cancel does
        with pytest.raises(LeaseLost), db.session() as s:
            repo.fence(s, lease)
        with db.session() as s:
            s.add(
                _run(
                    "evalrun_b",
                    status="in_progress",
                    lease_owner="dead",
                    lease_token=3,
                    lease_expires_at=time.time() - 1,
                )
            )
        again = repo.claim_run(db, "w2", 30)
        assert again is not None and again.run_id in ("evalrun_a", "evalrun_b")
    finally:
        db.dispose()

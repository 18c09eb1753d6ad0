"""Migration 0004_evals and the eval-run queue, on SQLite and PostgreSQL (as the store tests)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from afinar.errors import LeaseLost
from tests.support.migrations import database, downgrade, schema_diff, table_names

MINE = ("evals", "eval_runs", "eval_output_items", "eval_gates")


def test_evals_migration_matches_the_tables_and_downgrades(db_url: str) -> None:
    with database(db_url) as db:
        db.migrate()
        assert schema_diff(db, *(f"'{name}'" for name in MINE)) == []
        downgrade(db, "0004_evals-1")
        assert not set(MINE) & table_names(db)
        db.migrate()


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


def test_eval_run_queue_claims_once_fences_and_skips_gate_runs(db: Any) -> None:
    from afinar.queue.leases import claim_run, fence_run, revoke_run

    with db.session() as s:
        s.add(_run("evalrun_gate", job_id="ftjob-x", gate_role="base"))
        s.add(_run("evalrun_a"))
    lease = claim_run(db, "w1", 30)
    assert lease is not None and lease.run_id == "evalrun_a"
    assert claim_run(db, "w2", 30) is None  # held, and the gate run is never claimed
    with db.session() as s:
        run = fence_run(s, lease, 30)
        revoke_run(run)  # what cancel does
    with pytest.raises(LeaseLost), db.session() as s:
        fence_run(s, lease)
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
    again = claim_run(db, "w2", 30)
    assert again is not None and again.run_id in ("evalrun_a", "evalrun_b")

"""What the dashboard's evals pages compute from runs: rates, the preselected pair, filters, words."""

from __future__ import annotations

from typing import Any

from afinar.dashboard.evalview import (
    RunRow,
    default_pair,
    item_text,
    percent,
    points,
    run_row,
    shown_items,
)
from afinar.dashboard.modelcard import gate_rule
from afinar.store.tables import EvalRun


def _row(rid: str, status: str = "completed", job: str | None = None, role: str | None = None) -> RunRow:
    return RunRow(rid, rid, "m", status, 0, 0.5, [], 1, 1, {}, job_id=job, gate_role=role)


def test_run_row_rates_and_an_unstarted_run() -> None:
    run = EvalRun(
        id="evalrun_1",
        name="r",
        model="tiny",
        status="in_progress",
        items=[{}, {}, {}, {}],
        completed_items=2,
        created_at=1,
        result_counts={"total": 4, "passed": 1, "failed": 0, "errored": 1},
        per_testing_criteria_results=[
            {"testing_criteria": "exact", "passed": 1, "failed": 0, "errored": 1},
            {"testing_criteria": "late", "passed": 0, "failed": 0, "errored": 0},
        ],
    )
    row = run_row(run)
    assert row.running and (row.completed, row.total) == (2, 4)
    assert row.pass_rate == 1.0  # over the graded items, like the API's: the errored one is left out
    assert [(c.name, c.rate, c.passed, c.graded) for c in row.criteria] == [
        ("exact", 1.0, 1, 1),  # the errored result is not graded
        ("late", None, 0, 0),  # nothing graded yet: no rate, not 0%
    ]
    run.result_counts = {"total": 4, "passed": 0, "failed": 0, "errored": 0}
    assert run_row(run).pass_rate is None


def test_default_pair_prefers_the_latest_gate_then_the_two_latest_completed_runs() -> None:
    newest_first = [
        _row("c", "in_progress"),
        _row("t", job="ftjob-1", role="tuned"),
        _row("x"),
        _row("b", job="ftjob-1", role="base"),
        _row("old"),
    ]
    assert default_pair(newest_first) == ("b", "t")
    assert default_pair([_row("c", "in_progress"), _row("new"), _row("x", "failed"), _row("old")]) == (
        "old",
        "new",
    )
    assert default_pair([_row("only")]) == (None, None)


def test_item_filters() -> None:
    items: list[dict[str, Any]] = [
        {"change": c} for c in ("improved", "same", "regressed", "missing", "same")
    ]
    assert len(shown_items(items, "all")) == 5
    assert [i["change"] for i in shown_items(items, "changed")] == ["improved", "regressed", "missing"]
    assert [i["change"] for i in shown_items(items, "same")] == ["same", "same"]
    assert shown_items(items, "regressed") == [{"change": "regressed"}]


def test_words_and_numbers() -> None:
    assert (percent(None), percent(0.25), percent(1)) == ("—", "25.0%", "100.0%")
    assert (points(None), points(0.25), points(-0.1), points(0.0)) == (
        "—",
        "+25.0 pts",
        "-10.0 pts",
        "+0.0 pts",
    )
    assert item_text("plain") == "plain"
    assert item_text({"q": "Ça va?", "a": 1}) == '{\n  "a": 1,\n  "q": "Ça va?"\n}'
    assert (
        gate_rule({"min_pass_rate": 0.5, "beat_base_by": None, "testing_criteria": None})
        == "pass rate ≥ 50.0%"
    )
    assert (
        gate_rule({"min_pass_rate": None, "beat_base_by": -0.05, "testing_criteria": "exact"})
        == "beat the base by ≥ -5.0 pts (on criterion “exact”)"
    )
    assert gate_rule(None) == "—"

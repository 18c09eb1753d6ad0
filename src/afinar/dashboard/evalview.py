"""What the evals pages show: evals with their runs, a run's pass rates and progress, a comparison.

Numbers come from the evals services and ``afinar.domain.eval_results`` (the API's code); this
module only shapes them for the templates: pass rates per criterion, which runs to preselect for a comparison,
and which compared items a filter keeps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from afinar.domain import eval_results as report
from afinar.domain.evals import COMPLETED, FINISHED

if TYPE_CHECKING:
    from afinar.store.tables import Eval, EvalRun

SHOW = ("all", "changed", "improved", "regressed", "same")
MAX_RUNS = 100


@dataclass(frozen=True)
class CriterionRate:
    name: str
    rate: float | None  # None until an item was graded
    passed: int
    graded: int


@dataclass(frozen=True)
class RunRow:
    id: str
    name: str
    model: str | None
    status: str
    created_at: int
    pass_rate: float | None
    criteria: list[CriterionRate]
    completed: int
    total: int
    counts: dict[str, int]
    job_id: str | None = None
    gate_role: str | None = None
    error: str | None = None

    @property
    def running(self) -> bool:
        return self.status not in FINISHED

    @property
    def label(self) -> str:
        return f"{self.name} · {self.model or 'given samples'}"


@dataclass(frozen=True)
class EvalRow:
    id: str
    name: str
    criteria: list[dict[str, str]]
    created_at: int
    runs: list[RunRow] = field(default_factory=list)
    more_runs: bool = False

    @property
    def latest(self) -> RunRow | None:
        return self.runs[0] if self.runs else None


def criteria_of(ev: Eval) -> list[dict[str, str]]:
    """``[{"name", "type", "detail"}]`` of an eval's testing criteria, for a short description."""
    out = []
    for c in ev.testing_criteria:
        detail = c.get("operation") or c.get("evaluation_metric") or ""
        out.append({"name": str(c.get("name", "")), "type": str(c.get("type", "")), "detail": str(detail)})
    return out


def run_row(run: EvalRun) -> RunRow:
    counts = {k: int(run.result_counts.get(k, 0)) for k in ("total", "passed", "failed", "errored")}
    graded = report.graded(counts)  # errored items are neither passes nor failures
    rates = []
    for row in run.per_testing_criteria_results:
        n = report.graded(row)
        rate = report.criterion_rate(row) if n else None
        rates.append(CriterionRate(row["testing_criteria"], rate, int(row["passed"]), n))
    return RunRow(
        id=run.id,
        name=run.name,
        model=run.model,
        status=run.status,
        created_at=run.created_at,
        pass_rate=report.pass_rate(counts) if graded else None,
        criteria=rates,
        completed=run.completed_items,
        total=len(run.items),
        counts=counts,
        job_id=run.job_id,
        gate_role=run.gate_role,
        error=(run.error or {}).get("message"),
    )


def eval_row(ev: Eval, runs: list[EvalRun], more_runs: bool = False) -> EvalRow:
    return EvalRow(ev.id, ev.name, criteria_of(ev), ev.created_at, [run_row(r) for r in runs], more_runs)


def default_pair(runs: list[RunRow]) -> tuple[str | None, str | None]:
    """The runs a comparison starts with (runs newest first): the latest gate's base and tuned runs,
    else the two latest completed runs (older = base), else nothing."""
    done = [r for r in runs if r.status == COMPLETED]
    for r in done:
        if r.job_id and r.gate_role == "tuned":
            base = next((b for b in done if b.job_id == r.job_id and b.gate_role == "base"), None)
            if base is not None:
                return base.id, r.id
    if len(done) >= 2:
        return done[1].id, done[0].id
    return None, None


def shown_items(items: list[dict[str, Any]], show: str) -> list[dict[str, Any]]:
    """The compared items a filter keeps: ``changed`` = improved, regressed or missing on one side."""
    if show == "all":
        return items
    if show == "changed":
        return [i for i in items if i["change"] != "same"]
    return [i for i in items if i["change"] == show]


def item_text(item: Any) -> str:
    """A datasource item for display: a lone string as is, anything else as indented JSON."""
    if isinstance(item, str):
        return item
    return json.dumps(item, indent=2, ensure_ascii=False, sort_keys=True)


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{100 * rate:.1f}%"


def points(delta: float | None) -> str:
    """A pass-rate delta in percentage points, signed: ``+25.0 pts``."""
    return "—" if delta is None else f"{100 * delta:+.1f} pts"

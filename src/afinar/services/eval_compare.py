"""Two runs of one eval side by side (``c.eval_comparisons``): per-criterion pass rates and
per-item changes. The API (``api/schemas/evals.py``, ``comparison_object``), the dashboard and the
CLI all show this one comparison."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from afinar.domain import eval_results as results
from afinar.errors import InvalidRequest
from afinar.store import evals as repo
from afinar.store.tables import EvalOutputItem, EvalRun

if TYPE_CHECKING:
    from afinar.services.eval_runs import EvalRunsService
    from afinar.services.evals import EvalsService
    from afinar.store.db import Database


@dataclass(frozen=True)
class Comparison:
    """``report``: ``afinar.domain.eval_results.compare`` of the two runs (rates, changes, items)."""

    eval_id: str
    base: EvalRun
    candidate: EvalRun
    report: dict[str, Any]


class EvalComparisonsService:
    def __init__(self, *, db: Database, evals: EvalsService, runs: EvalRunsService) -> None:
        self.db = db
        self.evals = evals
        self.runs = runs

    def compare(
        self, org_id: str, eid: str, base_run_id: str | None, candidate_run_id: str | None
    ) -> Comparison:
        ev = self.evals.get(org_id, eid)
        for param, value in (("base_run_id", base_run_id), ("candidate_run_id", candidate_run_id)):
            if not value:
                raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param)
        assert base_run_id is not None and candidate_run_id is not None
        base = self.runs.get_run(org_id, eid, base_run_id)
        cand = self.runs.get_run(org_id, eid, candidate_run_id)
        with self.db.session() as s:
            base_items = [_item_dict(i) for i in repo.all_items(s, base.id)]
            cand_items = [_item_dict(i) for i in repo.all_items(s, cand.id)]
        report = results.compare(
            base.result_counts,
            cand.result_counts,
            base.per_testing_criteria_results,
            cand.per_testing_criteria_results,
            base_items,
            cand_items,
        )
        return Comparison(ev.id, base, cand, report)


def _item_dict(i: EvalOutputItem) -> dict[str, Any]:
    return {
        "datasource_item_id": i.datasource_item_id,
        "datasource_item": i.datasource_item,
        "status": i.status,
        "results": i.results,
        "sample": i.sample,
    }

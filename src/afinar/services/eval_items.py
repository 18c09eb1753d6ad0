"""The output items of an eval run: one per data item, with its sample and every grader's result
(``c.eval_output_items``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from afinar.errors import InvalidRequest, NotFound
from afinar.services import eval_checks as checks
from afinar.store import evals as repo
from afinar.store.pagination import Page
from afinar.store.tables import EvalOutputItem

if TYPE_CHECKING:
    from afinar.services.eval_runs import EvalRunsService
    from afinar.store.db import Database


class EvalOutputItemsService:
    def __init__(self, *, db: Database, runs: EvalRunsService) -> None:
        self.db = db
        self.runs = runs

    def list_items(
        self,
        org_id: str,
        eid: str,
        rid: str,
        *,
        after: str | None,
        limit: int,
        order: str,
        status: str | None,
    ) -> Page[EvalOutputItem]:
        checks.check_limit(limit)
        desc = checks.check_order(order)
        if status is not None and status not in ("pass", "fail", "error"):
            raise InvalidRequest("status must be 'pass', 'fail' or 'error'", param="status")
        self.runs.get_run(org_id, eid, rid)
        with self.db.session() as s:
            return repo.list_items(s, rid, after=after, limit=limit, desc=desc, status=status)

    def get(self, org_id: str, eid: str, rid: str, item_id: str) -> EvalOutputItem:
        self.runs.get_run(org_id, eid, rid)
        with self.db.session() as s:
            row = repo.get_item(s, rid, item_id)
        if row is None:
            raise NotFound(f"No output item found with id '{item_id}'.", param="output_item_id")
        return row

"""Evals: create, list, retrieve, update and delete evals (``c.evals``).

The other nouns of the Evals API have their own services: runs (``services/eval_runs.py``,
``c.eval_runs``), output items (``services/eval_items.py``, ``c.eval_output_items``), comparisons
(``services/eval_compare.py``, ``c.eval_comparisons``) and the eval gate of a fine-tuning job
(``services/eval_gates.py``, ``c.eval_gates``). Requests arrive checked for shape, as domain
objects (``afinar.domain.evals``); the services check what needs the database. A worker executes
queued runs (``afinar.worker.eval_runs``).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from afinar.domain.evals import EvalUpdate, NewEval
from afinar.errors import InvalidRequest, NotFound
from afinar.services import eval_checks as checks
from afinar.store import evals as repo
from afinar.store import files as files_repo
from afinar.store.pagination import Page
from afinar.store.tables import Eval

if TYPE_CHECKING:
    from afinar.blobs.sealed import SealedBlobs
    from afinar.services.models import ModelsService
    from afinar.services.orgs import Principal
    from afinar.store.db import Database

DATABASE_PURPOSES = ("evals", "user_data", "assistants")


def new_eval_id() -> str:
    return "eval_" + secrets.token_hex(16)


def eval_not_found(eid: str) -> NotFound:
    return NotFound(f"No eval found with id '{eid}'.", param="eval_id")


def item_schema(ev: Eval) -> dict[str, Any]:
    return dict(ev.data_source_config.get("schema", {}).get("properties", {}).get("item") or {})


def check_model(models: ModelsService, org_id: str, name: str, param: str) -> str:
    """A model the organisation may call (a judge, a run's model); NotFound names ``param``."""
    try:
        models.get(org_id, "", name)
    except NotFound as exc:
        exc.param = param
        raise
    return name


class EvalsService:
    def __init__(self, *, db: Database, sealed: SealedBlobs, models: ModelsService) -> None:
        self.db = db
        self.sealed = sealed
        self.models = models

    def _check_references(self, org_id: str, criteria: list[dict[str, Any]]) -> None:
        """Judge models must be usable by the organisation; databases must be its SQLite files."""
        for i, cr in enumerate(criteria):
            if cr["type"] in ("label_model", "score_model"):
                check_model(self.models, org_id, cr["model"], f"testing_criteria[{i}].model")
            if cr["type"] == "sql_execution":
                fid = cr["database_file_id"]
                param = f"testing_criteria[{i}].database_file_id"
                with self.db.session() as s:
                    row = files_repo.get(s, org_id, fid)
                if row is None:
                    raise InvalidRequest(f"No such file: {fid}", param=param)
                if row.purpose not in DATABASE_PURPOSES:
                    raise InvalidRequest(
                        f"File {fid} has purpose '{row.purpose}'; upload the database with purpose 'evals'.",
                        param=param,
                    )
                from afinar.evals.sqlexec import SQLITE_MAGIC

                head = next(self.sealed.iter_bytes(org_id, row.blob_key), b"")
                if head[: len(SQLITE_MAGIC)] != SQLITE_MAGIC:
                    raise InvalidRequest(f"File {fid} is not a SQLite 3 database.", param=param)

    def create(self, p: Principal, req: NewEval) -> Eval:
        self._check_references(p.org_id, req.testing_criteria)
        now = int(self.db.now())
        ev = Eval(
            id=new_eval_id(),
            org_id=p.org_id,
            project_id=p.project_id,
            name=req.name,
            data_source_config=req.data_source_config,
            testing_criteria=req.testing_criteria,
            eval_metadata=req.metadata,
            created_at=now,
            updated_at=now,
        )
        with self.db.session() as s:
            s.add(ev)
        return ev

    def get(self, org_id: str, eid: str) -> Eval:
        with self.db.session() as s:
            ev = repo.get_eval(s, org_id, eid)
        if ev is None:
            raise eval_not_found(eid)
        return ev

    def list_evals(
        self, org_id: str, *, after: str | None, limit: int, order: str, order_by: str
    ) -> Page[Eval]:
        checks.check_limit(limit)
        desc = checks.check_order(order)
        if order_by not in ("created_at", "updated_at"):
            raise InvalidRequest("order_by must be 'created_at' or 'updated_at'", param="order_by")
        with self.db.session() as s:
            return repo.list_evals(
                s, org_id, after=after, limit=limit, desc=desc, by_updated=order_by == "updated_at"
            )

    def update(self, org_id: str, eid: str, req: EvalUpdate) -> Eval:
        with self.db.session() as s:
            ev = repo.get_eval(s, org_id, eid)
            if ev is None:
                raise eval_not_found(eid)
            if req.name is not None:
                ev.name = req.name
            if req.metadata_given:
                ev.eval_metadata = req.metadata
            ev.updated_at = int(self.db.now())
        return ev

    def delete(self, org_id: str, eid: str) -> str:
        with self.db.session() as s:
            ev = repo.get_eval(s, org_id, eid)
            if ev is None:
                raise eval_not_found(eid)
            repo.delete_eval(s, ev)  # a worker running one of its runs loses its lease and stops
        return eid


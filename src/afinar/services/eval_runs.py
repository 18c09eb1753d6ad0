"""Eval runs: create (queue), list, retrieve, cancel and delete the runs of an eval (``c.eval_runs``).

Runs are only *queued* here; a worker executes them (``afinar.worker.eval_runs``). Cancelling or
deleting a run takes its lease away (``queue/leases.py``), so the worker's next write fails and it
stops.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from afinar.domain import eval_results as results
from afinar.domain.evals import CANCELED, FINISHED, IN_PROGRESS, QUEUED, DataSource, NewRun, Row
from afinar.domain.webhooks import RUN_CANCELED
from afinar.errors import InvalidRequest, NotFound
from afinar.queue.leases import revoke_run
from afinar.services import eval_checks as checks
from afinar.services.evals import check_model, eval_not_found, item_schema
from afinar.store import evals as repo
from afinar.store import files as files_repo
from afinar.store import webhooks as outbox
from afinar.store.pagination import Page
from afinar.store.tables import Eval, EvalRun

if TYPE_CHECKING:
    from afinar.blobs.sealed import SealedBlobs
    from afinar.services.evals import EvalsService
    from afinar.services.models import ModelsService
    from afinar.services.orgs import Principal
    from afinar.store.db import Database

MAX_DATA_FILE_BYTES = 64 * 1024 * 1024


def new_run_id() -> str:
    return "evalrun_" + secrets.token_hex(16)


def run_not_found(rid: str) -> NotFound:
    return NotFound(f"No eval run found with id '{rid}'.", param="run_id")


class EvalRunsService:
    def __init__(
        self, *, db: Database, sealed: SealedBlobs, models: ModelsService, evals: EvalsService
    ) -> None:
        self.db = db
        self.sealed = sealed
        self.models = models
        self.evals = evals

    def check_data_source(
        self, org_id: str, ev: Eval, ds: DataSource
    ) -> tuple[dict[str, Any], list[Row], str | None]:
        """(the echoed data source, its items, the model): what needs the database, before anything
        is queued — the data file's items, the eval's item schema, the model."""
        rows = list(ds.rows) if ds.rows is not None else self._file_rows(org_id, str(ds.file_id))
        checks.check_rows(rows, item_schema(ev))
        if ds.kind == "jsonl":
            if checks.uses_sample(ev.testing_criteria):
                missing = next(
                    (
                        i
                        for i, r in enumerate(rows)
                        if not isinstance((r.sample or {}).get("output_text"), str)
                    ),
                    None,
                )
                if missing is not None:
                    raise InvalidRequest(
                        f"Item {missing} has no sample.output_text, which the testing criteria use; give "
                        "'sample' in each line or run a 'completions' data source.",
                        param="data_source.source",
                    )
            return ds.echo(), rows, None
        if ds.model is not None:
            check_model(self.models, org_id, ds.model, "data_source.model")
        return ds.echo(), rows, ds.model

    def _file_rows(self, org_id: str, fid: str) -> list[Row]:
        with self.db.session() as s:
            row = files_repo.get(s, org_id, fid)
        if row is None:
            raise InvalidRequest(f"No such file: {fid}", param="data_source.source.id")
        if row.bytes > MAX_DATA_FILE_BYTES:
            raise InvalidRequest(
                f"An eval data file may be at most {MAX_DATA_FILE_BYTES} bytes.",
                param="data_source.source.id",
            )
        return checks.parse_jsonl(self.sealed.read_bytes(org_id, row.blob_key).splitlines())

    def new_run(
        self,
        ev: Eval,
        *,
        org_id: str,
        project_id: str | None,
        api_key_id: str | None,
        data_source: dict[str, Any],
        rows: list[Row],
        model: str | None,
        name: str | None = None,
        metadata: dict[str, str] | None = None,
        job_id: str | None = None,
        gate_role: str | None = None,
    ) -> EvalRun:
        """A queued run (not yet added to a session)."""
        rid = new_run_id()
        return EvalRun(
            id=rid,
            eval_id=ev.id,
            org_id=org_id,
            project_id=project_id,
            api_key_id=api_key_id,
            name=name or f"{model or 'jsonl'}-{rid[-8:]}",
            model=model,
            data_source=data_source,
            items=[r.to_json() for r in rows],
            status=QUEUED,
            error=None,
            run_metadata=metadata,
            result_counts=results.result_counts([]) | {"total": len(rows)},
            per_testing_criteria_results=results.per_criteria(ev.testing_criteria, []),
            per_model_usage=[],
            completed_items=0,
            created_at=int(self.db.now()),
            job_id=job_id,
            gate_role=gate_role,
            lease_token=0,
        )

    def create_run(self, p: Principal, eid: str, req: NewRun) -> EvalRun:
        ev = self.evals.get(p.org_id, eid)
        data_source, rows, model = self.check_data_source(p.org_id, ev, req.data_source)
        run = self.new_run(
            ev,
            org_id=p.org_id,
            project_id=p.project_id,
            api_key_id=p.key_id,
            data_source=data_source,
            rows=rows,
            model=model,
            name=req.name,
            metadata=req.metadata,
        )
        with self.db.session() as s:
            if repo.get_eval(s, p.org_id, eid) is None:
                raise eval_not_found(eid)
            s.add(run)
        return run

    def get_run(self, org_id: str, eid: str, rid: str) -> EvalRun:
        with self.db.session() as s:
            run = repo.get_run(s, org_id, eid, rid)
        if run is None:
            raise run_not_found(rid)
        return run

    def list_runs(
        self, org_id: str, eid: str, *, after: str | None, limit: int, order: str, status: str | None
    ) -> Page[EvalRun]:
        checks.check_limit(limit)
        desc = checks.check_order(order)
        if status is not None and status not in (QUEUED, IN_PROGRESS, *FINISHED):
            raise InvalidRequest(
                "status must be queued, in_progress, completed, canceled or failed", param="status"
            )
        self.evals.get(org_id, eid)
        with self.db.session() as s:
            return repo.list_runs(s, org_id, eid, after=after, limit=limit, desc=desc, status=status)

    def cancel_run(self, org_id: str, eid: str, rid: str) -> EvalRun:
        with self.db.session() as s:
            run = repo.get_run(s, org_id, eid, rid)
            if run is None:
                raise run_not_found(rid)
            if run.status in FINISHED:
                raise InvalidRequest(
                    f"The run has already {'been ' if run.status == 'canceled' else ''}{run.status};"
                    " it cannot be canceled.",
                    param="run_id",
                )
            run.status = CANCELED
            run.finished_at = int(self.db.now())
            revoke_run(run)
            outbox.emit_run(s, RUN_CANCELED, run)
        return run

    def delete_run(self, org_id: str, eid: str, rid: str) -> str:
        with self.db.session() as s:
            run = repo.get_run(s, org_id, eid, rid)
            if run is None:
                raise run_not_found(rid)
            repo.delete_run(s, run)
        return rid

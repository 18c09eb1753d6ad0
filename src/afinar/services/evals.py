"""Evals: create/list/retrieve/update/delete evals, their runs and output items, comparisons, gates.

Runs are only *queued* here; a worker executes them (``afinar.worker.evals``). A fine-tuning job
may carry an ``eval_gate``: :func:`parse_gate` checks it when the job is created and
:func:`register_gate` stores it in the same transaction as the job; the job's worker runs it
after training (``afinar.worker.evals.eval_gate_blocks``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from afinar.errors import InvalidRequest, NotFound
from afinar.evals import criteria as crit
from afinar.evals import items as items_mod
from afinar.evals import report
from afinar.evals import requests as rq
from afinar.store import evals as repo
from afinar.store import files as files_repo
from afinar.store.db import session_now
from afinar.store.pagination import Page
from afinar.store.tables import Eval, EvalGate, EvalOutputItem, EvalRun

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from afinar.services.container import Container
    from afinar.services.orgs import Principal
    from afinar.store.tables import Job

DATABASE_PURPOSES = ("evals", "user_data", "assistants")
MAX_DATA_FILE_BYTES = 64 * 1024 * 1024


def eval_not_found(eid: str) -> NotFound:
    return NotFound(f"No eval found with id '{eid}'.", param="eval_id")


def run_not_found(rid: str) -> NotFound:
    return NotFound(f"No eval run found with id '{rid}'.", param="run_id")


def item_schema(ev: Eval) -> dict[str, Any]:
    return dict(ev.data_source_config.get("schema", {}).get("properties", {}).get("item") or {})


class EvalsService:
    def __init__(self, c: Container) -> None:
        self.c = c

    # --- evals ---------------------------------------------------------------------------------

    def _check_references(self, org_id: str, criteria: list[dict[str, Any]]) -> None:
        """Judge models must be usable by the organisation; databases must be its SQLite files."""
        for i, cr in enumerate(criteria):
            if cr["type"] in ("label_model", "score_model"):
                self._check_model(org_id, cr["model"], f"testing_criteria[{i}].model")
            if cr["type"] == "sql_execution":
                fid = cr["database_file_id"]
                param = f"testing_criteria[{i}].database_file_id"
                with self.c.db.session() as s:
                    row = files_repo.get(s, org_id, fid)
                if row is None:
                    raise InvalidRequest(f"No such file: {fid}", param=param)
                if row.purpose not in DATABASE_PURPOSES:
                    raise InvalidRequest(
                        f"File {fid} has purpose '{row.purpose}'; upload the database with purpose 'evals'.",
                        param=param,
                    )
                from afinar.evals.sqlexec import SQLITE_MAGIC

                head = next(self.c.sealed.iter_bytes(org_id, row.blob_key), b"")
                if head[: len(SQLITE_MAGIC)] != SQLITE_MAGIC:
                    raise InvalidRequest(f"File {fid} is not a SQLite 3 database.", param=param)

    def _check_model(self, org_id: str, name: Any, param: str) -> str:
        if not isinstance(name, str) or not name:
            raise InvalidRequest("Missing required parameter: 'model'.", param=param)
        try:
            self.c.models.get(org_id, "", name)
        except NotFound as exc:
            exc.param = param
            raise
        return name

    def create(self, p: Principal, body: dict[str, Any]) -> Eval:
        config = rq.data_source_config(body.get("data_source_config"))
        criteria = crit.check_criteria(body.get("testing_criteria"))
        self._check_references(p.org_id, criteria)
        now = int(self.c.clock())
        ev = Eval(
            id=rq.eval_id(),
            org_id=p.org_id,
            project_id=p.project_id,
            name=rq.name(body.get("name"), "eval"),
            data_source_config=config,
            testing_criteria=criteria,
            eval_metadata=rq.metadata(body.get("metadata")),
            created_at=now,
            updated_at=now,
        )
        with self.c.db.session() as s:
            s.add(ev)
        return ev

    def get(self, org_id: str, eid: str) -> Eval:
        with self.c.db.session() as s:
            ev = repo.get_eval(s, org_id, eid)
        if ev is None:
            raise eval_not_found(eid)
        return ev

    def list_evals(
        self, org_id: str, *, after: str | None, limit: int, order: str, order_by: str
    ) -> Page[Eval]:
        rq.check_limit(limit)
        desc = rq.check_order(order)
        if order_by not in ("created_at", "updated_at"):
            raise InvalidRequest("order_by must be 'created_at' or 'updated_at'", param="order_by")
        with self.c.db.session() as s:
            return repo.list_evals(
                s, org_id, after=after, limit=limit, desc=desc, by_updated=order_by == "updated_at"
            )

    def update(self, org_id: str, eid: str, body: dict[str, Any]) -> Eval:
        with self.c.db.session() as s:
            ev = repo.get_eval(s, org_id, eid)
            if ev is None:
                raise eval_not_found(eid)
            if "name" in body:
                ev.name = rq.name(body["name"], ev.name)
            if "metadata" in body:
                ev.eval_metadata = rq.metadata(body["metadata"])
            ev.updated_at = int(self.c.clock())
        return ev

    def delete(self, org_id: str, eid: str) -> str:
        with self.c.db.session() as s:
            ev = repo.get_eval(s, org_id, eid)
            if ev is None:
                raise eval_not_found(eid)
            repo.delete_eval(s, ev)  # a worker running one of its runs loses its lease and stops
        return eid

    # --- runs ----------------------------------------------------------------------------------

    def check_data_source(
        self, org_id: str, ev: Eval, raw: Any, *, model_required: bool = True
    ) -> tuple[dict[str, Any], list[items_mod.Row], str | None]:
        """(the echoed data source, its items, the model) — every 400 before anything is queued."""
        if not isinstance(raw, dict):
            raise InvalidRequest("Missing required parameter: 'data_source'.", param="data_source")
        kind = raw.get("type")
        if kind == "responses":
            raise InvalidRequest(
                "data_source type 'responses' is not supported; use 'completions' or 'jsonl'.",
                param="data_source.type",
            )
        if kind not in ("jsonl", "completions"):
            raise InvalidRequest(
                "data_source.type must be 'jsonl' or 'completions'.", param="data_source.type"
            )
        rows = self._rows(org_id, raw.get("source"))
        items_mod.check_rows(rows, item_schema(ev))
        echo: dict[str, Any] = {"type": kind, "source": raw["source"]}
        model: str | None = None
        if kind == "jsonl":
            if rq.uses_sample(ev.testing_criteria):
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
            return echo, rows, None
        if model_required or raw.get("model") is not None:
            model = self._check_model(org_id, raw.get("model"), "data_source.model")
        echo["model"] = model
        echo["input_messages"] = rq.input_messages(raw.get("input_messages"))
        echo["sampling_params"] = rq.sampling(raw.get("sampling_params"))
        return echo, rows, model

    def _rows(self, org_id: str, source: Any) -> list[items_mod.Row]:
        if not isinstance(source, dict):
            raise InvalidRequest(
                "Missing required parameter: 'data_source.source'.", param="data_source.source"
            )
        kind = source.get("type")
        if kind == "file_content":
            content = source.get("content")
            if not isinstance(content, list) or not content:
                raise InvalidRequest(
                    "'content' must be a non-empty array.", param="data_source.source.content"
                )
            if len(content) > items_mod.MAX_ITEMS:
                raise InvalidRequest(
                    f"A run may have at most {items_mod.MAX_ITEMS} items.", param="data_source.source.content"
                )
            return [items_mod.row_of(x, f"content[{i}]") for i, x in enumerate(content)]
        if kind == "file_id":
            fid = source.get("id")
            with self.c.db.session() as s:
                row = files_repo.get(s, org_id, fid) if isinstance(fid, str) else None
            if row is None:
                raise InvalidRequest(f"No such file: {fid}", param="data_source.source.id")
            if row.bytes > MAX_DATA_FILE_BYTES:
                raise InvalidRequest(
                    f"An eval data file may be at most {MAX_DATA_FILE_BYTES} bytes.",
                    param="data_source.source.id",
                )
            return items_mod.parse_jsonl(self.c.sealed.read_bytes(org_id, row.blob_key).splitlines())
        if kind == "stored_completions":
            raise InvalidRequest(
                "source type 'stored_completions' is not supported: this server keeps no completion logs.",
                param="data_source.source.type",
            )
        raise InvalidRequest(
            "data_source.source.type must be 'file_content' or 'file_id'.", param="data_source.source.type"
        )

    def new_run(
        self,
        ev: Eval,
        *,
        org_id: str,
        project_id: str | None,
        api_key_id: str | None,
        data_source: dict[str, Any],
        rows: list[items_mod.Row],
        model: str | None,
        name: str | None = None,
        metadata: dict[str, str] | None = None,
        job_id: str | None = None,
        gate_role: str | None = None,
    ) -> EvalRun:
        rid = rq.run_id()
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
            status=repo.QUEUED,
            error=None,
            run_metadata=metadata,
            result_counts=report.result_counts([]) | {"total": len(rows)},
            per_testing_criteria_results=report.per_criteria(ev.testing_criteria, []),
            per_model_usage=[],
            completed_items=0,
            created_at=int(self.c.clock()),
            job_id=job_id,
            gate_role=gate_role,
            lease_token=0,
        )

    def create_run(self, p: Principal, eid: str, body: dict[str, Any]) -> EvalRun:
        ev = self.get(p.org_id, eid)
        data_source, rows, model = self.check_data_source(p.org_id, ev, body.get("data_source"))
        run = self.new_run(
            ev,
            org_id=p.org_id,
            project_id=p.project_id,
            api_key_id=p.key_id,
            data_source=data_source,
            rows=rows,
            model=model,
            name=rq.name(body.get("name"), "") or None,
            metadata=rq.metadata(body.get("metadata")),
        )
        with self.c.db.session() as s:
            if repo.get_eval(s, p.org_id, eid) is None:
                raise eval_not_found(eid)
            s.add(run)
        return run

    def get_run(self, org_id: str, eid: str, rid: str) -> EvalRun:
        with self.c.db.session() as s:
            run = repo.get_run(s, org_id, eid, rid)
        if run is None:
            raise run_not_found(rid)
        return run

    def list_runs(
        self, org_id: str, eid: str, *, after: str | None, limit: int, order: str, status: str | None
    ) -> Page[EvalRun]:
        rq.check_limit(limit)
        desc = rq.check_order(order)
        if status is not None and status not in (repo.QUEUED, repo.IN_PROGRESS, *repo.FINISHED):
            raise InvalidRequest(
                "status must be queued, in_progress, completed, canceled or failed", param="status"
            )
        self.get(org_id, eid)
        with self.c.db.session() as s:
            return repo.list_runs(s, org_id, eid, after=after, limit=limit, desc=desc, status=status)

    def cancel_run(self, org_id: str, eid: str, rid: str) -> EvalRun:
        with self.c.db.session() as s:
            run = repo.get_run(s, org_id, eid, rid)
            if run is None:
                raise run_not_found(rid)
            if run.status in repo.FINISHED:
                raise InvalidRequest(
                    f"The run has already {'been ' if run.status == 'canceled' else ''}{run.status};"
                    " it cannot be canceled.",
                    param="run_id",
                )
            run.status = repo.CANCELED
            run.finished_at = int(self.c.clock())
            repo.revoke(run)
        return run

    def delete_run(self, org_id: str, eid: str, rid: str) -> str:
        with self.c.db.session() as s:
            run = repo.get_run(s, org_id, eid, rid)
            if run is None:
                raise run_not_found(rid)
            repo.delete_run(s, run)
        return rid

    def output_items(
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
        rq.check_limit(limit)
        desc = rq.check_order(order)
        if status is not None and status not in ("pass", "fail", "error"):
            raise InvalidRequest("status must be 'pass', 'fail' or 'error'", param="status")
        self.get_run(org_id, eid, rid)
        with self.c.db.session() as s:
            return repo.list_items(s, rid, after=after, limit=limit, desc=desc, status=status)

    def output_item(self, org_id: str, eid: str, rid: str, item_id: str) -> EvalOutputItem:
        self.get_run(org_id, eid, rid)
        with self.c.db.session() as s:
            row = repo.get_item(s, rid, item_id)
        if row is None:
            raise NotFound(f"No output item found with id '{item_id}'.", param="output_item_id")
        return row

    # --- comparison ------------------------------------------------------------------------------

    def compare(
        self, org_id: str, eid: str, base_run_id: str | None, candidate_run_id: str | None
    ) -> dict[str, Any]:
        """Side by side: per-criterion pass rates and per-item changes of two runs of one eval."""
        ev = self.get(org_id, eid)
        for param, value in (("base_run_id", base_run_id), ("candidate_run_id", candidate_run_id)):
            if not value:
                raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param)
        assert base_run_id is not None and candidate_run_id is not None
        base = self.get_run(org_id, eid, base_run_id)
        cand = self.get_run(org_id, eid, candidate_run_id)
        with self.c.db.session() as s:
            base_items = [_item_dict(i) for i in repo.all_items(s, base.id)]
            cand_items = [_item_dict(i) for i in repo.all_items(s, cand.id)]
        out = report.compare(
            base.result_counts,
            cand.result_counts,
            base.per_testing_criteria_results,
            cand.per_testing_criteria_results,
            base_items,
            cand_items,
        )
        return {
            "object": "eval.comparison",
            "eval_id": ev.id,
            "base": _run_summary(base),
            "candidate": _run_summary(cand),
            **out,
        }

    def gate_verdict(self, org_id: str, job_id: str) -> dict[str, Any] | None:
        """The eval gate of a job and its verdict (``None`` when the job has no gate)."""
        with self.c.db.session() as s:
            gate = repo.get_gate(s, job_id)
        if gate is None or gate.org_id != org_id:
            return None
        return gate_object(gate)


def _item_dict(i: EvalOutputItem) -> dict[str, Any]:
    return {
        "datasource_item_id": i.datasource_item_id,
        "datasource_item": i.datasource_item,
        "status": i.status,
        "results": i.results,
        "sample": i.sample,
    }


def _run_summary(run: EvalRun) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "name": run.name,
        "model": run.model,
        "status": run.status,
        "result_counts": run.result_counts,
        "per_testing_criteria_results": run.per_testing_criteria_results,
    }


def gate_object(gate: EvalGate) -> dict[str, Any]:
    return {
        "object": "fine_tuning.job.eval_gate",
        "fine_tuning_job_id": gate.job_id,
        "eval_id": gate.eval_id,
        **{k: v for k, v in gate.spec.items() if k != "data_source"},
        "status": gate.status,
        "verdict": gate.verdict,
    }


# --- the fine-tuning gate ---------------------------------------------------------------------


def parse_gate(c: Container, org_id: str, raw: Any) -> dict[str, Any] | None:
    """Check a job's ``eval_gate`` (400s with ``param`` under ``eval_gate``); None when absent.

    ``{"eval_id": "eval_…", "data_source": {completions data source without "model"},
    "min_pass_rate": 0.5, "beat_base_by": 0.0, "testing_criteria": "<criterion name>"?}`` — at least one of
    ``min_pass_rate`` / ``beat_base_by``. Pass rates are items passing every criterion over the graded
    items (errored items are left out), or one criterion's pass rate when ``testing_criteria`` names it.
    """
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidRequest("eval_gate must be an object.", param="eval_gate")
    svc = EvalsService(c)
    eid = raw.get("eval_id")
    if not isinstance(eid, str) or not eid:
        raise InvalidRequest("Missing required parameter: 'eval_gate.eval_id'.", param="eval_gate.eval_id")
    try:
        ev = svc.get(org_id, eid)
    except NotFound:
        raise InvalidRequest(f"No eval found with id '{eid}'.", param="eval_gate.eval_id") from None
    min_rate = rq.rate(raw, "min_pass_rate", 0.0)
    beat = rq.rate(raw, "beat_base_by", -1.0)
    if min_rate is None and beat is None:
        raise InvalidRequest("eval_gate needs 'min_pass_rate' and/or 'beat_base_by'.", param="eval_gate")
    criterion = raw.get("testing_criteria")
    if criterion is not None and criterion not in [x["name"] for x in ev.testing_criteria]:
        raise InvalidRequest(
            f"The eval has no testing criterion named {criterion!r}.", param="eval_gate.testing_criteria"
        )
    source = raw.get("data_source")
    if not isinstance(source, dict) or source.get("type") != "completions":
        raise InvalidRequest(
            "eval_gate.data_source must be a 'completions' data source (the platform fills in "
            "the base and the tuned model).",
            param="eval_gate.data_source",
        )
    try:
        echo, _rows, _model = svc.check_data_source(
            org_id, ev, {**source, "model": None}, model_required=False
        )
    except InvalidRequest as exc:
        exc.param = "eval_gate." + (exc.param or "data_source")
        raise
    echo.pop("model", None)
    return {
        "eval_id": eid,
        "data_source": echo,
        "min_pass_rate": min_rate,
        "beat_base_by": beat,
        "testing_criteria": criterion,
    }


def register_gate(s: Session, job: Job, spec: dict[str, Any]) -> EvalGate:
    """Store a checked gate for ``job``, inside the transaction that creates the job."""
    gate = EvalGate(
        job_id=job.id,
        org_id=job.org_id,
        eval_id=spec["eval_id"],
        spec=spec,
        status="pending",
        verdict=None,
        created_at=int(session_now(s)),
    )
    s.add(gate)
    return gate

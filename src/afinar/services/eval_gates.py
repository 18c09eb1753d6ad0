"""The eval gate of a fine-tuning job, on the API side (``c.eval_gates``).

``parse`` checks a job's ``eval_gate`` when the job is created (400s with ``param`` under
``eval_gate``), ``register`` stores it in the transaction that creates the job, ``get`` reads it
with its verdict. The job's worker runs it after training (``afinar.worker.eval_gate.EvalGate``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from afinar.errors import InvalidRequest, NotFound
from afinar.services import eval_checks as checks
from afinar.store import evals as repo
from afinar.store.tables import EvalGate

if TYPE_CHECKING:
    from afinar.services.eval_runs import EvalRunsService
    from afinar.services.evals import EvalsService
    from afinar.store.db import Database, Session
    from afinar.store.tables import Job


class EvalGatesService:
    def __init__(self, *, db: Database, evals: EvalsService, runs: EvalRunsService) -> None:
        self.db = db
        self.evals = evals
        self.runs = runs

    def parse(self, org_id: str, raw: Any) -> dict[str, Any] | None:
        """Check a job's ``eval_gate`` (400s with ``param`` under ``eval_gate``); None when absent.

        ``{"eval_id": "eval_…", "data_source": {completions data source without "model"},
        "min_pass_rate": 0.5, "beat_base_by": 0.0, "testing_criteria": "<criterion name>"?}`` — at least
        one of ``min_pass_rate`` / ``beat_base_by``. Pass rates are items passing every criterion over the
        graded items (errored items are left out), or one criterion's pass rate when ``testing_criteria``
        names it.
        """
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise InvalidRequest("eval_gate must be an object.", param="eval_gate")
        eid = raw.get("eval_id")
        if not isinstance(eid, str) or not eid:
            raise InvalidRequest(
                "Missing required parameter: 'eval_gate.eval_id'.", param="eval_gate.eval_id"
            )
        try:
            ev = self.evals.get(org_id, eid)
        except NotFound:
            raise InvalidRequest(f"No eval found with id '{eid}'.", param="eval_gate.eval_id") from None
        min_rate = checks.rate(raw, "min_pass_rate", 0.0)
        beat = checks.rate(raw, "beat_base_by", -1.0)
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
            ds = checks.data_source({**source, "model": None}, model_required=False)
            echo, _rows, _model = self.runs.check_data_source(org_id, ev, ds)
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

    @staticmethod
    def register(s: Session, job: Job, spec: dict[str, Any]) -> EvalGate:
        """Store a checked gate for ``job``, inside the transaction that creates the job."""
        return repo.add_gate(s, job, spec)

    def get(self, org_id: str, job_id: str) -> EvalGate | None:
        """The eval gate of a job, with its status and verdict (``None`` when the job has no gate)."""
        with self.db.session() as s:
            gate = repo.get_gate(s, job_id)
        if gate is None or gate.org_id != org_id:
            return None
        return gate

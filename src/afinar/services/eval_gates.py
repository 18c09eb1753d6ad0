"""The eval gate of a fine-tuning job, on the API side (``c.eval_gates``).

``parse`` checks a job's ``eval_gate`` when the job is created (400s with ``param`` under
``eval_gate``), ``register`` stores it in the transaction that creates the job, ``get`` reads it
with its verdict. The job's worker runs it after training (``afinar.worker.eval_gate.EvalGate``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from afinar.errors import InvalidRequest, NotFound
from afinar.store import evals as repo
from afinar.store.tables import EvalGate

if TYPE_CHECKING:
    from afinar.domain.jobs import EvalGateSpec
    from afinar.services.eval_runs import EvalRunsService
    from afinar.services.evals import EvalsService
    from afinar.store.db import Database, Session
    from afinar.store.tables import Job


class EvalGatesService:
    def __init__(self, *, db: Database, evals: EvalsService, runs: EvalRunsService) -> None:
        self.db = db
        self.evals = evals
        self.runs = runs

    def parse(self, org_id: str, spec: EvalGateSpec | None) -> dict[str, Any] | None:
        """Check a job's eval gate against its eval (400s with ``param`` under ``eval_gate``): the eval
        exists, the criterion is one of its criteria, the data source's items fit its item schema.
        Returns the gate as stored (None when the job has none); the edge checked its shape.

        Pass rates are items passing every criterion over the graded items (errored items are left
        out), or one criterion's pass rate when ``testing_criteria`` names it.
        """
        if spec is None:
            return None
        try:
            ev = self.evals.get(org_id, spec.eval_id)
        except NotFound:
            raise InvalidRequest(
                f"No eval found with id '{spec.eval_id}'.", param="eval_gate.eval_id"
            ) from None
        criterion = spec.testing_criteria
        if criterion is not None and criterion not in [x["name"] for x in ev.testing_criteria]:
            raise InvalidRequest(
                f"The eval has no testing criterion named {criterion!r}.", param="eval_gate.testing_criteria"
            )
        try:
            echo, _rows, _model = self.runs.check_data_source(org_id, ev, spec.data_source)
        except InvalidRequest as exc:
            exc.param = "eval_gate." + (exc.param or "data_source")
            raise
        echo.pop("model", None)
        return {
            "eval_id": spec.eval_id,
            "data_source": echo,
            "min_pass_rate": spec.min_pass_rate,
            "beat_base_by": spec.beat_base_by,
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

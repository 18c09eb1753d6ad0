"""The fine-tuning eval gate: run the job's eval on the base model and on the freshly trained adapter,
judge the rule, record the verdict, and say whether the model may be published.

``EvalGate.check(job, adapter_path, write=..., should_stop=...)`` is called by the job runner after
the safety gate and before the model is published. When the job has a gate, it runs two eval runs
(listed under the eval, in parallel so the engine batches them), judges the rule and records the
verdict: the gate row, and an ``eval_gate`` job event written through the runner's fenced
``write``. It returns a :class:`~afinar.domain.gates.GateVerdict` (``details`` go into the model
card's ``checks["eval_gate"]``) and never fails the job itself: the runner does, with
``verdict.job_error()`` (``eval_gate_failed``), when ``passed`` is false. ``None``: no gate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from afinar.domain import eval_results
from afinar.domain.evals import CANCELED, COMPLETED, FINISHED
from afinar.domain.gates import GateVerdict
from afinar.domain.models import ServableModel
from afinar.errors import LeaseLost
from afinar.queue.leases import revoke_run, take_run
from afinar.services import eval_checks as checks
from afinar.store import evals as repo
from afinar.store import jobs as jobs_repo
from afinar.store.tables import EvalRun, Job

if TYPE_CHECKING:
    from afinar.catalog.registry import Catalog
    from afinar.config import Settings
    from afinar.services.eval_runs import EvalRunsService
    from afinar.store.db import Database, Session
    from afinar.worker.eval_runs import EvalRunner

log = logging.getLogger("afinar.worker")

GATE = "eval_gate"
GATE_FAILED = "eval_gate_failed"
NOT_SERVED = " The model is not served."

# The job runner's fenced write: ``write(fn)`` runs ``fn(session, job)`` while the job's lease holds.
FencedWrite = Callable[[Callable[["Session", Job], Any]], Any]


class GateError(Exception):
    """The gate could not be judged (its eval was deleted, a run failed or was canceled)."""


def _summary(run: EvalRun, criterion: str | None, role: str) -> dict[str, Any]:
    """A run's side of the verdict; its pass rate leaves errored items out (GateError when every
    item errored: nothing was graded, so nothing can be judged)."""
    counts: dict[str, Any] = run.result_counts
    if criterion is not None:
        row = next((r for r in run.per_testing_criteria_results if r["testing_criteria"] == criterion), None)
        counts = row or {}
    if not eval_results.graded(counts):
        errored = int(counts.get("errored", 0))
        raise GateError(f"the {role} eval run graded no item ({errored} errored)")
    rate = eval_results.pass_rate(counts)
    return {
        "run_id": run.id,
        "model": run.model,
        "status": run.status,
        "pass_rate": round(rate, 6),
        "result_counts": run.result_counts,
        "per_testing_criteria_results": run.per_testing_criteria_results,
    }


class EvalGate:
    def __init__(
        self,
        *,
        db: Database,
        runs: EvalRunsService,
        runner: EvalRunner,
        catalog: Catalog,
        settings: Settings,
    ) -> None:
        self.db = db
        self.runs = runs
        self.runner = runner
        self.catalog = catalog
        self.settings = settings

    def check(
        self,
        job: Job,
        adapter_path: Path,
        *,
        write: FencedWrite,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> GateVerdict | None:
        """Run ``job``'s gate, if any, on the adapter at ``adapter_path``; None when it has none.

        ``write`` is the job runner's fenced write; ``should_stop`` tells the gate's runs that the job's
        lease was lost (they stop, and ``LeaseLost`` propagates, as from ``write``)."""
        job = write(lambda s, j: j)  # the job as its lease holds it now (its owner is ours)
        with self.db.session() as s:
            gate = repo.get_gate(s, job.id)
        if gate is None:
            return None
        spec = dict(gate.spec)
        write(
            lambda s, j: jobs_repo.add_event(
                s, j, f"Running the eval gate on eval {spec['eval_id']}: base and fine-tuned model"
            )
        )
        try:
            verdict = self._run(job, spec, adapter_path, should_stop)
        except LeaseLost:
            raise
        except Exception as exc:
            if not isinstance(exc, GateError):
                log.exception("eval gate of %s crashed", job.id)
            verdict = {
                "passed": False,
                "eval_id": spec["eval_id"],
                "error": str(exc),
                "decided_at": int(self.db.now()),
                "rule": {k: spec.get(k) for k in ("min_pass_rate", "beat_base_by", "testing_criteria")},
            }
        passed = bool(verdict["passed"])
        with self.db.session() as s:
            row = repo.get_gate(s, job.id)
            if row is not None:
                row.status = "passed" if passed else "failed"
                row.verdict = verdict
                row.decided_at = verdict["decided_at"]
        message = _message(verdict)
        write(
            lambda s, j: jobs_repo.add_event(
                s, j, message, level="info" if passed else "error", type_="eval_gate", data=verdict
            )
        )
        return GateVerdict(
            gate=GATE,
            passed=passed,
            message=message if passed else message + NOT_SERVED,
            details=verdict,
            error_code=GATE_FAILED,
        )

    def _run(
        self, job: Job, spec: dict[str, Any], adapter_path: Path, should_stop: Callable[[], bool]
    ) -> dict[str, Any]:
        """Run the gate's eval on base and tuned; return the verdict (raises GateError, LeaseLost)."""
        owner = str(job.lease_owner)
        with self.db.session() as s:
            ev = repo.get_eval(s, job.org_id, spec["eval_id"])
            if ev is None:
                raise GateError(f"the eval {spec['eval_id']} of the gate was deleted")
            for old in repo.runs_of_job(s, job.id):  # an earlier attempt of this job (a crash, a resume)
                if old.status not in FINISHED:
                    old.status = CANCELED
                    old.finished_at = int(self.db.now())
                    revoke_run(old)
        try:
            ds = checks.data_source({**spec["data_source"], "model": None}, model_required=False)
            _, rows, _ = self.runs.check_data_source(job.org_id, ev, ds)
        except Exception as exc:
            reason = getattr(exc, "message", exc)
            raise GateError(f"the gate's data source cannot be read: {reason}") from None
        leases = {}
        with self.db.session() as s:
            for role, model in (("base", job.model), ("tuned", job.model_name)):
                run = self.runs.new_run(
                    ev,
                    org_id=job.org_id,
                    project_id=job.project_id,
                    api_key_id=job.api_key_id,
                    data_source={**spec["data_source"], "model": model},
                    rows=rows,
                    model=model,
                    name=f"eval gate of {job.id}: {role}",
                    job_id=job.id,
                    gate_role=role,
                )
                s.add(run)
                s.flush()
                leases[role] = take_run(s, run, owner, self.settings.lease_seconds)
        entry = self.catalog.require(job.model)
        tuned = ServableModel(
            job.model_name,
            entry.id,
            self.catalog.local_path(entry, self.settings.models_dir),
            adapter_path,
            job.org_id,
            int(self.db.now()),
        )
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="afinar-gate") as pool:
            futures = {
                "base": pool.submit(self.runner.executor(leases["base"], should_stop=should_stop).run),
                "tuned": pool.submit(
                    self.runner.executor(leases["tuned"], servable=tuned, should_stop=should_stop).run
                ),
            }
            for role, fut in futures.items():
                try:
                    fut.result()
                except LeaseLost:
                    if should_stop():
                        raise
                    raise GateError(f"the {role} eval run was canceled or deleted") from None
        with self.db.session() as s:
            runs = {role: repo.get_run_any(s, lease.run_id) for role, lease in leases.items()}
        for role, done in runs.items():
            if done is None or done.status != COMPLETED:
                detail = (done.error or {}).get("message") if done is not None else "deleted"
                raise GateError(f"the {role} eval run did not complete: {detail}")
        base, tuned_run = runs["base"], runs["tuned"]
        assert base is not None and tuned_run is not None
        criterion = spec.get("testing_criteria")
        b, t = _summary(base, criterion, "base"), _summary(tuned_run, criterion, "tuned")
        decided = eval_results.judge_gate(
            t["pass_rate"],
            b["pass_rate"],
            min_pass_rate=spec.get("min_pass_rate"),
            beat_base_by=spec.get("beat_base_by"),
        )
        return {
            "passed": decided.passed,
            "eval_id": ev.id,
            "rule": {
                "min_pass_rate": spec.get("min_pass_rate"),
                "beat_base_by": spec.get("beat_base_by"),
                "testing_criteria": criterion,
            },
            "base": b,
            "tuned": t,
            "pass_rate_delta": round(t["pass_rate"] - b["pass_rate"], 6),
            "reasons": decided.reasons,
            "decided_at": int(self.db.now()),
        }


def _message(verdict: dict[str, Any]) -> str:
    if "error" in verdict:
        return f"The eval gate on eval {verdict['eval_id']} could not be judged: {verdict['error']}."
    word = "passed" if verdict["passed"] else "failed"
    tuned, base = verdict["tuned"]["pass_rate"], verdict["base"]["pass_rate"]
    return (
        f"The eval gate on eval {verdict['eval_id']} {word}: tuned pass rate {tuned:.3f}, base {base:.3f}; "
        + "; ".join(verdict["reasons"])
        + "."
    )

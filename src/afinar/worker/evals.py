"""The worker's share of evals: run queued eval runs, and the fine-tuning eval gate.

``run_queued_eval(c, owner)`` claims one queued run (lease + heartbeat, like jobs) and executes it;
the worker's short lane calls it (``worker/loop.py``), so a run never waits behind training.

``eval_gate_blocks(runner, ev, checks)`` is called by ``JobRunner._on_done`` after the safety gate and
before the model is published. When the job has a gate, it runs the gate's eval on the base model and
on the freshly trained adapter (two eval runs, listed under the eval, in parallel so the engine batches
them), judges the rule, records the verdict (the gate row, an ``eval_gate`` job event, the model card's
``checks``) and, when the rule fails, fails the job with ``error.code = "eval_gate_failed"`` so the
model is never served. It returns True when it failed the job.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from afinar.domain.models import ServableModel
from afinar.errors import LeaseLost
from afinar.evals import report
from afinar.evals.runner import RunExecutor
from afinar.store import evals as repo
from afinar.store import jobs as jobs_repo
from afinar.store.tables import EvalRun, Job

if TYPE_CHECKING:
    from afinar.services.container import Container
    from afinar.worker.runner import JobRunner

log = logging.getLogger("afinar.worker")

GATE_FAILED = "eval_gate_failed"


# --- queued runs ----------------------------------------------------------------------------------


def run_queued_eval(c: Container, owner: str) -> bool:
    """Claim and execute one queued eval run; False when there was none."""
    lease_seconds = c.settings.lease_seconds
    lease = repo.claim_run(c.db, owner, lease_seconds)
    if lease is None:
        return False
    log.info("worker %s claimed eval run %s", owner, lease.run_id)
    lost = threading.Event()

    def beat() -> None:
        while not lost.wait(c.settings.heartbeat_seconds):
            try:
                with c.db.session() as s:
                    repo.fence(s, lease, lease_seconds)
            except LeaseLost:
                lost.set()
            except Exception:  # a transient database error: try again next beat
                log.exception("eval run heartbeat failed")

    thread = threading.Thread(target=beat, daemon=True, name="afinar-eval-heartbeat")
    thread.start()
    try:
        RunExecutor(c, lease, should_stop=lost.is_set, lease_seconds=lease_seconds).run()
    except LeaseLost:
        log.info("eval run %s: lease lost (canceled or deleted)", lease.run_id)
    finally:
        lost.set()
    return True


# --- the fine-tuning gate ------------------------------------------------------------------------------


class GateError(Exception):
    """The gate could not be judged (its eval was deleted, a run failed or was canceled)."""


def _summary(run: EvalRun, criterion: str | None, role: str) -> dict[str, Any]:
    """A run's side of the verdict; its pass rate leaves errored items out (GateError when every
    item errored: nothing was graded, so nothing can be judged)."""
    counts: dict[str, Any] = run.result_counts
    if criterion is not None:
        row = next((r for r in run.per_testing_criteria_results if r["testing_criteria"] == criterion), None)
        counts = row or {}
    if not report.graded(counts):
        errored = int(counts.get("errored", 0))
        raise GateError(f"the {role} eval run graded no item ({errored} errored)")
    rate = report.pass_rate(counts)
    return {
        "run_id": run.id,
        "model": run.model,
        "status": run.status,
        "pass_rate": round(rate, 6),
        "result_counts": run.result_counts,
        "per_testing_criteria_results": run.per_testing_criteria_results,
    }


def run_gate(runner: JobRunner, job: Job, spec: dict[str, Any], adapter_path: Path) -> dict[str, Any]:
    """Run the gate's eval on base and tuned; return the verdict (raises GateError, LeaseLost)."""
    from afinar.services.evals import EvalsService

    c = runner.c
    svc = EvalsService(c)
    owner = runner.lease.owner
    with c.db.session() as s:
        ev = repo.get_eval(s, job.org_id, spec["eval_id"])
        if ev is None:
            raise GateError(f"the eval {spec['eval_id']} of the gate was deleted")
        for old in repo.runs_of_job(s, job.id):  # an earlier attempt of this job (a crash, a resume)
            if old.status not in repo.FINISHED:
                old.status = repo.CANCELED
                old.finished_at = int(c.clock())
                repo.revoke(old)
    try:
        _, rows, _ = svc.check_data_source(
            job.org_id, ev, {**spec["data_source"], "model": None}, model_required=False
        )
    except Exception as exc:
        raise GateError(f"the gate's data source cannot be read: {getattr(exc, 'message', exc)}") from None
    leases = {}
    with c.db.session() as s:
        for role, model in (("base", job.model), ("tuned", job.model_name)):
            run = svc.new_run(
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
            leases[role] = repo.take(s, run, owner, c.settings.lease_seconds)
    entry = c.catalog.require(job.model)
    tuned = ServableModel(
        job.model_name,
        entry.id,
        c.catalog.local_path(entry, c.settings.models_dir),
        adapter_path,
        job.org_id,
        int(c.clock()),
    )
    stop = runner.lost.is_set
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="afinar-gate") as pool:
        futures = {
            "base": pool.submit(RunExecutor(c, leases["base"], should_stop=stop).run),
            "tuned": pool.submit(RunExecutor(c, leases["tuned"], servable=tuned, should_stop=stop).run),
        }
        statuses = {}
        for role, fut in futures.items():
            try:
                statuses[role] = fut.result()
            except LeaseLost:
                if runner.lost.is_set():
                    raise
                raise GateError(f"the {role} eval run was canceled or deleted") from None
    with c.db.session() as s:
        runs = {role: repo.get_run_any(s, lease.run_id) for role, lease in leases.items()}
    for role, done in runs.items():
        if done is None or done.status != repo.COMPLETED:
            detail = (done.error or {}).get("message") if done is not None else "deleted"
            raise GateError(f"the {role} eval run did not complete: {detail}")
    base, tuned_run = runs["base"], runs["tuned"]
    assert base is not None and tuned_run is not None
    criterion = spec.get("testing_criteria")
    b, t = _summary(base, criterion, "base"), _summary(tuned_run, criterion, "tuned")
    decided = report.judge_gate(
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
        "decided_at": int(c.clock()),
    }


def eval_gate_blocks(runner: JobRunner, ev: dict[str, Any], checks: dict[str, Any] | None = None) -> bool:
    """Run the job's gate, if any; True when the gate failed the job (the caller must stop).

    The verdict goes into ``checks["eval_gate"]`` (the model card's checks) as well.
    """
    c = runner.c
    job: Job = runner.write(lambda s, j: j)
    with c.db.session() as s:
        gate = repo.get_gate(s, job.id)
    if gate is None:
        return False
    spec = dict(gate.spec)
    runner.write(
        lambda s, j: jobs_repo.add_event(
            s, j, f"Running the eval gate on eval {spec['eval_id']}: base and fine-tuned model"
        )
    )
    try:
        verdict = run_gate(runner, job, spec, Path(ev["adapter_path"]))
    except LeaseLost:
        raise
    except Exception as exc:
        if not isinstance(exc, GateError):
            log.exception("eval gate of %s crashed", job.id)
        verdict = {
            "passed": False,
            "eval_id": spec["eval_id"],
            "error": str(exc),
            "decided_at": int(c.clock()),
            "rule": {k: spec.get(k) for k in ("min_pass_rate", "beat_base_by", "testing_criteria")},
        }
    passed = bool(verdict["passed"])
    with c.db.session() as s:
        row = repo.get_gate(s, job.id)
        if row is not None:
            row.status = "passed" if passed else "failed"
            row.verdict = verdict
            row.decided_at = verdict["decided_at"]
    message = _message(verdict)
    runner.write(
        lambda s, j: jobs_repo.add_event(
            s, j, message, level="info" if passed else "error", type_="eval_gate", data=verdict
        )
    )
    if checks is not None:
        checks["eval_gate"] = verdict
    if passed:
        return False
    runner.fail({"code": GATE_FAILED, "message": message + " The model is not served.", "param": None})
    return True


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

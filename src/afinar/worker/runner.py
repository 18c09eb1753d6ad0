"""Run one claimed job to its next resting state: validate (then release it, queued, to the
training lane), or train (or resume), evaluate and publish.

Every database write goes through ``fence``: a worker whose lease was taken away (the job was
cancelled, or another worker recovered it) gets ``LeaseLost`` and stops the child instead of
committing anything.
"""

from __future__ import annotations

import base64
import logging
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from afinar import ids
from afinar.domain.jobs import TERMINAL, JobStatus
from afinar.errors import LeaseLost
from afinar.queue.leases import Lease, fence, heartbeat, release
from afinar.store import jobs as repo
from afinar.store.tables import Checkpoint, FineTunedModel, Job
from afinar.worker.card import build_card, write_card
from afinar.worker.child import TrainingChild
from afinar.worker.gates import evaluate_tuned_model, expected_safety_seconds, verdict_summary
from afinar.worker.results import results_csv
from afinar.worker.validate import validate_job_files

if TYPE_CHECKING:
    from afinar.services.container import Container

log = logging.getLogger("afinar.worker")


def sweep_job_dirs(c: Container) -> int:
    """Remove the job directories of terminal (or vanished) jobs: crash and cancel leftovers."""
    root = c.settings.jobs_dir
    if not root.is_dir():
        return 0
    removed = 0
    for d in root.iterdir():
        if not d.is_dir():
            continue
        with c.db.session() as s:
            job = repo.get_any(s, d.name)
        if job is None or JobStatus(job.status) in TERMINAL:
            shutil.rmtree(d, ignore_errors=True)
            removed += 1
    if removed:
        log.info("removed %d job directories of finished jobs", removed)
    return removed


def step_message(ev: dict[str, Any]) -> str:
    """OpenAI's wording: ``Step 30/30: training loss=0.0113, validation loss=…, full validation loss=…``."""
    train = ev.get("train_loss")
    msg = f"Step {ev['step']}/{ev['total_steps']}: training loss=" + (
        f"{train:.4f}" if train is not None else "n/a"
    )
    if ev.get("valid_loss") is not None:
        msg += f", validation loss={ev['valid_loss']:.4f}"
    if ev.get("full_valid_loss") is not None:
        msg += f", full validation loss={ev['full_valid_loss']:.4f}"
    return msg


def step_metrics(ev: dict[str, Any]) -> dict[str, Any]:
    data = {
        "step": ev["step"],
        "total_steps": ev["total_steps"],
        "train_loss": ev.get("train_loss"),
        "train_mean_token_accuracy": ev.get("train_accuracy"),
    }
    if ev.get("valid_loss") is not None:
        data["valid_loss"] = ev["valid_loss"]
        data["valid_mean_token_accuracy"] = ev.get("valid_accuracy")
    if ev.get("full_valid_loss") is not None:
        data["full_valid_loss"] = ev["full_valid_loss"]
        data["full_valid_mean_token_accuracy"] = ev.get("full_valid_accuracy")
    return data


class JobRunner:
    def __init__(self, c: Container, lease: Lease) -> None:
        self.c = c
        self.lease = lease
        self.settings = c.settings
        self.job_dir = c.settings.jobs_dir / lease.job_id
        self.lost = threading.Event()  # set when the lease was taken away
        self._stop = threading.Event()  # set when this runner is done with the job
        self.child: TrainingChild | None = None
        self._steps_per_epoch = 1
        self._t_first: tuple[float, int] | None = None
        self._safety_seconds = 0.0  # expected length of the post-training safety evaluation
        self._secret: bytes | None = None  # the org's data key (base64) for the training child

    # -- helpers -----------------------------------------------------------------------------

    def write(self, fn: Any) -> Any:
        """Run ``fn(session, job)`` in one fenced transaction."""
        with self.c.db.session() as s:
            job = fence(s, self.lease, self.settings.lease_seconds)
            return fn(s, job)

    def fail(self, error: dict[str, Any], *, event: str | None = None) -> None:
        def _do(s: Any, job: Job) -> None:
            job.status = JobStatus.FAILED
            job.error = error
            job.estimated_finish = None
            job.finished_at = int(self.c.clock())
            repo.add_event(s, job, event or error["message"], level="error")
            release(s, self.lease)

        self.write(_do)
        self.cleanup_scratch()
        self.remove_job_dir()

    def cleanup_scratch(self) -> None:
        for name in ("train.jsonl", "valid.jsonl"):  # plaintext copies made by older versions
            (self.job_dir / name).unlink(missing_ok=True)

    def remove_job_dir(self) -> None:
        """A terminal job keeps nothing in plaintext: checkpoints, adapter, spec and log go."""
        shutil.rmtree(self.job_dir, ignore_errors=True)

    # -- phases ------------------------------------------------------------------------------

    def run(self) -> None:
        beat = threading.Thread(target=self._heartbeat, daemon=True, name=f"heartbeat-{self.lease.job_id}")
        beat.start()
        try:
            self._run()
        finally:
            self._stop.set()

    def _run(self) -> None:
        try:
            job = self.write(lambda s, j: j)
            if job.status == JobStatus.VALIDATING_FILES:
                # The short lane's work ends here: a valid job is released as queued and the
                # training lane claims it (worker/loop.py), so validation never waits for training.
                self.validate(job)
                return
            if job.status == JobStatus.PAUSED:
                self.write(lambda s, j: release(s, self.lease))
                return
            self.train(job)
        except LeaseLost:
            log.info("job %s: lease lost (cancelled or recovered elsewhere)", self.lease.job_id)
            if self.child is not None:
                self.child.kill()
            self.cleanup_scratch()
            if self._terminal():  # cancelled; a job recovered by another worker keeps its dir
                self.remove_job_dir()
            self._bill_if_cancelled()

    def _terminal(self) -> bool:
        with self.c.db.session() as s:
            job = repo.get_any(s, self.lease.job_id)
        return job is None or JobStatus(job.status) in TERMINAL

    def _bill_if_cancelled(self) -> None:
        # BILLING HOOK: a cancelled job is billed once for the tokens of its last recorded step.
        try:
            self.c.usage.settle_job(self.lease.job_id)
        except Exception:  # metering never takes the worker down; the usage API settles it later
            log.exception("job %s: billing the cancelled job failed", self.lease.job_id)

    def validate(self, job: Job) -> Job | None:
        try:
            result = validate_job_files(self.c, job)
        except Exception as exc:  # an unreadable model or file is the job's failure, not the worker's
            log.exception("validation of %s crashed", job.id)
            self.fail({"code": "validation_error", "message": f"Validation failed: {exc}", "param": None})
            return None
        if result.error is not None:
            self.fail(result.error)
            return None

        def _queued(s: Any, j: Job) -> Job:
            j.resolved_hyperparameters = result.hyperparameters
            if j.status == JobStatus.VALIDATING_FILES:
                j.status = JobStatus.QUEUED
            repo.add_event(s, j, "Files validated, moving job to queued state")
            release(s, self.lease)  # the training lane claims it from the queue
            return j

        return self.write(_queued)

    def _spec(self, job: Job, resume_from: str | None) -> Path:
        from afinar.training.spec import TrainSpec

        entry = self.c.catalog.require(job.model)
        self.job_dir.mkdir(parents=True, exist_ok=True)
        # The child reads the encrypted blobs itself and gets the data key on its stdin: no
        # plaintext copy of the training data is ever written.
        train = self.c.files.get(job.org_id, job.training_file).blob_key
        valid = self.c.files.get(job.org_id, job.validation_file).blob_key if job.validation_file else None
        self._secret = base64.b64encode(self.c.keys.data_key(job.org_id))
        hyper = job.resolved_hyperparameters or {}
        spec = TrainSpec(
            base_model_path=str(self.c.catalog.local_path(entry, self.settings.models_dir)),
            train_file=str(self.c.blobs.path(train)),
            valid_file=str(self.c.blobs.path(valid)) if valid else None,
            train_blob_key=train,
            valid_blob_key=valid,
            output_dir=str(self.job_dir),
            n_epochs=int(hyper["n_epochs"]),
            batch_size=int(hyper["batch_size"]),
            learning_rate_multiplier=float(hyper["learning_rate_multiplier"]),
            seed=job.seed,
            max_length=entry.context_length,
            lora_target_modules=list(entry.lora_target_modules),
            checkpoint_every_steps=self.settings.checkpoint_every_steps,
            resume_from=resume_from,
            threads=self.settings.train_threads,
            step_delay_seconds=self.settings.train_step_delay_seconds,
        )
        path = self.job_dir / "spec.json"
        path.write_text(spec.model_dump_json(indent=2))
        return path

    def train(self, job: Job) -> None:
        saved = job.resume_checkpoint
        resume_from = saved if saved and Path(saved).exists() else None

        def _running(s: Any, j: Job) -> Job:
            first = j.started_at is None
            j.status = JobStatus.RUNNING
            j.started_at = j.started_at or int(self.c.clock())
            if first:
                repo.add_event(s, j, "Fine-tuning job started")
            else:
                step = int(Path(resume_from).name.removeprefix("step-")) if resume_from else 0
                repo.drop_metrics_after(s, j.id, step)
                repo.add_event(s, j, f"Fine-tuning job resumed from step {step}")
            return j

        job = self.write(_running)
        self._safety_seconds = self._expected_safety_seconds(job)
        spec_path = self._spec(job, resume_from)
        self.child = TrainingChild(spec_path, self.job_dir / "child.log", secret=self._secret)
        try:
            self._pump(self.child)
        finally:
            if self.child.proc.poll() is None:
                self.child.kill()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_seconds):
            try:
                status = heartbeat(self.c.db, self.lease, self.settings.lease_seconds)
            except LeaseLost:
                self.lost.set()
                if self.child is not None:
                    self.child.kill()
                return
            except Exception:  # a transient database error: try again next beat
                log.exception("heartbeat failed")
                continue
            if status == JobStatus.PAUSED and self.child is not None:
                self.child.pause()

    def _pump(self, child: TrainingChild) -> None:
        while True:
            if self.lost.is_set() and child.proc.poll() is not None:
                raise LeaseLost("lease lost while training")
            try:
                ev = child.next_event(timeout=0.5)
            except EOFError:
                break
            if ev is None:
                continue
            kind = ev.get("event")
            if kind == "started":
                self._on_started(ev)
            elif kind == "step":
                self._on_step(ev)
            elif kind == "checkpoint":
                self._on_checkpoint(ev)
            elif kind == "paused":
                self._on_paused(ev)
                return
            elif kind == "done":
                child.wait()
                self._on_done(ev)
                return
            elif kind == "error":
                self.fail(
                    {
                        "code": "training_error",
                        "message": f"Training failed: {ev.get('message')}",
                        "param": None,
                    }
                )
                return
        code = child.wait()
        if self.lost.is_set():
            raise LeaseLost("lease lost while training")
        tail = child.stderr_tail(self.job_dir / "child.log")
        self.fail(
            {
                "code": "training_error",
                "message": f"The training process exited with status {code}.",
                "param": None,
            },
            event=f"The training process exited with status {code}: {tail[-300:]}",
        )

    def _on_started(self, ev: dict[str, Any]) -> None:
        self._steps_per_epoch = max(1, int(ev["steps_per_epoch"]))
        self._t_first = (time.monotonic(), int(ev["start_step"]))

        def _do(s: Any, j: Job) -> None:
            j.total_steps = int(ev["total_steps"])

        self.write(_do)

    def _on_step(self, ev: dict[str, Any]) -> None:
        step, total = int(ev["step"]), int(ev["total_steps"])
        eta = None
        if self._t_first is not None and step > self._t_first[1]:
            per_step = (time.monotonic() - self._t_first[0]) / (step - self._t_first[1])
            # The model is published after the safety evaluation: its expected time counts too.
            eta = int(self.c.clock() + per_step * (total - step) + self._safety_seconds)

        def _do(s: Any, j: Job) -> None:
            j.current_step = step
            j.estimated_finish = eta
            repo.add_event(s, j, step_message(ev), type_="metrics", data=step_metrics(ev))
            # BILLING HOOK: tokens trained so far, what a cancellation bills.
            self.c.usage.note_progress(s, j, step, int(ev.get("trained_tokens") or 0))

        self.write(_do)

    def _on_checkpoint(self, ev: dict[str, Any]) -> None:
        step = int(ev["step"])
        epoch_end = step % self._steps_per_epoch == 0 or step == self._total()

        def _do(s: Any, j: Job) -> None:
            j.resume_checkpoint = ev["path"]
            if not epoch_end:
                return
            name = ids.checkpoint_model_name(j.model_name, step)
            if repo.checkpoint_by_name(s, j.org_id, name) is None:
                s.add(
                    Checkpoint(
                        id=ids.checkpoint_id(),
                        job_id=j.id,
                        org_id=j.org_id,
                        created_at=int(self.c.clock()),
                        step_number=step,
                        epoch=int(ev.get("epoch", 0)),
                        model_name=name,
                        metrics=ev.get("metrics") or {"step": step},
                        path=ev["path"],
                    )
                )
            repo.add_event(s, j, f"Checkpoint created at step {step} with Snapshot ID: {name}")

        self.write(_do)

    def _total(self) -> int:
        with self.c.db.session() as s:
            job = repo.get_any(s, self.lease.job_id)
            return int(job.total_steps or 0) if job else 0

    def _on_paused(self, ev: dict[str, Any]) -> None:
        def _do(s: Any, j: Job) -> None:
            j.resume_checkpoint = ev["path"]
            j.estimated_finish = None
            repo.add_event(s, j, f"Checkpoint saved at step {ev['step']}; the job is paused")
            release(s, self.lease)

        self.write(_do)

    def _expected_safety_seconds(self, job: Job) -> float:
        """How long the safety evaluation after training should take (docs/safety.md); 0 when off."""
        try:
            return expected_safety_seconds(self.c, job.model)
        except Exception:  # an estimate only: never fail the job over it
            log.exception("job %s: estimating the safety evaluation failed", job.id)
            return 0.0

    def _safety_progress(self, done: int, total: int, started: float) -> None:
        """One event per engine batch of answers, and ``estimated_finish`` from the evaluation's pace."""
        # Before the first batch: the estimate; then the evaluation's own pace.
        left = (time.monotonic() - started) / done * (total - done) if done > 0 else self._safety_seconds
        eta = int(self.c.clock() + left)
        data = {"phase": "safety_evaluation", "done": done, "total": total, "estimated_finish": eta}

        def _do(s: Any, j: Job) -> None:
            j.estimated_finish = eta
            repo.add_event(s, j, f"Safety evaluation: {done}/{total} prompts answered", data=data)

        self.write(_do)

    def _safety_gate(self, job: Job, adapter: Path, checks: dict[str, Any]) -> bool:
        """Run the post-training safety evaluation; fail the job (nothing billed) when it fails."""
        started = time.monotonic()
        verdict = evaluate_tuned_model(
            self.c, job, adapter, on_progress=lambda done, total: self._safety_progress(done, total, started)
        )
        if verdict is None:
            return True
        data = verdict.to_dict()
        checks["safety"] = data
        message = verdict_summary(verdict)
        if verdict.passed:
            self.write(lambda s, j: repo.add_event(s, j, message, type_="moderation_checks", data=data))
            return True

        def _fail(s: Any, j: Job) -> None:
            repo.add_event(s, j, message, level="error", type_="moderation_checks", data=data)

        self.write(_fail)
        self.fail({"code": "safety_eval_failed", "message": message, "param": None})
        return False

    def _on_done(self, ev: dict[str, Any]) -> None:
        with self.c.db.session() as s:
            job = fence(s, self.lease, self.settings.lease_seconds)
            metrics = [e.data for e in repo.metrics_events(s, job.id) if e.data]
        checks: dict[str, Any] = {}
        if not self._safety_gate(job, Path(ev["adapter_path"]), checks):
            return
        # EVAL GATE HOOK (afinar.worker.evals): a gated job is judged before its model is published.
        from afinar.worker.evals import eval_gate_blocks

        if eval_gate_blocks(self, ev, checks):
            return
        write_card(
            Path(ev["adapter_path"]),
            build_card(self.c, job, trained_tokens=int(ev["trained_tokens"]), metrics=metrics, checks=checks),
        )
        csv_bytes = results_csv(metrics, as_base64=self.settings.results_csv_base64)
        results = self.c.files.store(
            job.org_id, "step_metrics.csv", "fine-tune-results", [csv_bytes], project_id=job.project_id
        )
        try:
            sealed = self._seal_artefacts(job, Path(ev["adapter_path"]))
        except BaseException:
            self.c.files.delete(job.org_id, results.id)
            raise

        def _do(s: Any, j: Job) -> None:
            s.add(
                FineTunedModel(
                    id=j.model_name,
                    org_id=j.org_id,
                    project_id=j.project_id,
                    job_id=j.id,
                    base_model=j.model,
                    owned_by=j.org_id,
                    created_at=int(self.c.clock()),
                    adapter_path=str(ev["adapter_path"]),
                )
            )
            j.status = JobStatus.SUCCEEDED
            j.fine_tuned_model = j.model_name
            j.trained_tokens = int(ev["trained_tokens"])
            # BILLING HOOK: the training record, in the same transaction that marks the job succeeded.
            self.c.usage.bill_training(s, j, j.trained_tokens)
            j.result_files = [results.id]
            j.finished_at = int(self.c.clock())
            j.estimated_finish = None
            j.current_step = int(ev["step"])
            repo.add_event(s, j, f"New fine-tuned model created: {j.model_name}")
            repo.add_event(s, j, "The job has successfully completed")
            release(s, self.lease)

        try:
            self.write(_do)
        except BaseException:
            self.c.files.delete(job.org_id, results.id)
            for key in sealed:
                self.c.sealed.delete(key)
            raise
        self.cleanup_scratch()
        self.remove_job_dir()

    def _seal_artefacts(self, job: Job, final: Path) -> list[str]:
        """Encrypt the final adapter and the published checkpoints (without resume state)."""
        with self.c.db.session() as s:
            dirs = [final] + [Path(ck.path) for ck in repo.checkpoints(s, job.id)]
        return [self.c.artefacts.seal(job.org_id, d) for d in dirs if d.is_dir()]

"""Run one claimed job to its next resting state: validate (then release it, queued, to the
training lane), or train (or resume), gate and publish.

The runner drives the training child and turns its lines into job events and checkpoints; the
steps around it are the pipeline's (``JobPipeline``): ``ValidationStep`` (services/validation.py),
``SafetyGate`` (services/safety_gate.py), ``EvalGate`` (worker/eval_gate.py) and ``Publisher``
(services/publication.py). A gate returns a verdict; only the runner fails a job.

Every database write goes through ``fence``: a worker whose lease was taken away (the job was
cancelled, or another worker recovered it) gets ``LeaseLost`` and stops the child instead of
committing anything.
"""

from __future__ import annotations

import base64
import logging
import shlex
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from afinar import ids
from afinar.datasets.hyperparameters import DEFAULT_BETA
from afinar.domain.jobs import TERMINAL, JobStatus, TrainedAdapter
from afinar.domain.webhooks import JOB_FAILED
from afinar.errors import LeaseLost
from afinar.queue.leases import Lease, fence, heartbeat, release
from afinar.store import jobs as repo
from afinar.store import webhooks as outbox
from afinar.store.tables import Checkpoint, Job
from afinar.training.protocol import PREFERENCE_METRICS
from afinar.worker import wandb_sink
from afinar.worker.checkpoint_sync import CheckpointSync
from afinar.worker.child import TrainingChild

if TYPE_CHECKING:
    from afinar.blobs.local import BlobStore
    from afinar.catalog.registry import Catalog
    from afinar.config import Settings
    from afinar.crypto.keys import KeyRing
    from afinar.domain.gates import GateVerdict
    from afinar.services.artefacts import ArtefactsService
    from afinar.services.files import FilesService
    from afinar.services.publication import Publisher
    from afinar.services.safety_gate import SafetyGate
    from afinar.services.throughput import ThroughputRecords
    from afinar.services.usage import UsageBilling
    from afinar.services.validation import ValidationStep
    from afinar.store.db import Database
    from afinar.worker.eval_gate import EvalGate

log = logging.getLogger("afinar.worker")


def sweep_job_dirs(db: Database, jobs_dir: Path) -> int:
    """Remove the job directories of terminal (or vanished) jobs: crash and cancel leftovers."""
    if not jobs_dir.is_dir():
        return 0
    removed = 0
    for d in jobs_dir.iterdir():
        if not d.is_dir():
            continue
        with db.session() as s:
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


def training_hardware(ev: dict[str, Any]) -> dict[str, Any]:
    """Where the child trains, from its ``started`` line (empty from a child that does not say)."""
    keys = (
        *("device", "precision", "gradient_checkpointing", "compiled"),
        *("quantization", "processes", "sharding"),
    )
    return {k: ev[k] for k in keys if ev.get(k) is not None}


def hardware_message(hw: dict[str, Any]) -> str:
    """``Training on cpu in fp32`` (compiled, on an NF4 base, in N processes, with activation
    checkpointing when they apply)."""
    text = f"Training on {hw.get('device', 'an unknown device')} in {hw.get('precision', 'fp32')}"
    if hw.get("compiled"):
        text += " with compiled layers (torch.compile)"
    if hw.get("quantization") == "nf4":
        text += " on an NF4-quantised base (QLoRA)"
    if hw.get("processes"):
        text += f" in {hw['processes']} processes"
        text += " (sharded, FSDP)" if hw.get("sharding") == "fsdp" else ""
    return text + (" with activation checkpointing" if hw.get("gradient_checkpointing") else "")


def format_bytes(n: int) -> str:
    """1288490188 -> ``1.2 GiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def step_metrics(ev: dict[str, Any]) -> dict[str, Any]:
    data = {
        "step": ev["step"],
        "total_steps": ev["total_steps"],
        "train_loss": ev.get("train_loss"),
        "train_mean_token_accuracy": ev.get("train_accuracy"),
    }
    # Throughput (training/flops.py): tokens/s of the step alone, and MFU where the peak is known;
    # a DPO job's loss, reward margin and preference accuracy (training/dpo.py).
    for key in ("tokens_per_second", "mfu", "step_seconds", "device_kind", *PREFERENCE_METRICS):
        if ev.get(key) is not None:
            data[key] = ev[key]
    if ev.get("valid_loss") is not None:
        data["valid_loss"] = ev["valid_loss"]
        data["valid_mean_token_accuracy"] = ev.get("valid_accuracy")
    if ev.get("full_valid_loss") is not None:
        data["full_valid_loss"] = ev["full_valid_loss"]
        data["full_valid_mean_token_accuracy"] = ev.get("full_valid_accuracy")
    return data


@dataclass(frozen=True)
class JobPipeline:
    """The steps a job goes through around its training child, in order: validation (short lane),
    then, after training, the safety gate, the eval gate and publication (training lane)."""

    validation: ValidationStep
    safety: SafetyGate
    eval_gate: EvalGate
    publisher: Publisher


def child_device(train_device: str, worker_devices: str) -> Literal["auto", "cpu", "cuda"]:
    """The training child's device: ``AFINAR_TRAIN_DEVICE``, except that a worker that advertises
    only its CPU (``AFINAR_WORKER_DEVICES=cpu``) never lets ``auto`` pick a GPU it did not offer."""
    if train_device == "auto" and worker_devices == "cpu":
        return "cpu"
    return "cuda" if train_device == "cuda" else "cpu" if train_device == "cpu" else "auto"


class JobRunner:
    def __init__(
        self,
        lease: Lease,
        *,
        db: Database,
        settings: Settings,
        catalog: Catalog,
        files: FilesService,
        keys: KeyRing,
        blobs: BlobStore,
        usage: UsageBilling,
        pipeline: JobPipeline,
        throughput: ThroughputRecords,
        artefacts: ArtefactsService,
    ) -> None:
        self.lease = lease
        self.db = db
        self.settings = settings
        self.catalog = catalog
        self.files = files
        self.keys = keys
        self.blobs = blobs
        self.usage = usage
        self.pipeline = pipeline
        self.throughput = throughput
        self.artefacts = artefacts
        self._sync: CheckpointSync | None = None  # checkpoints to and from the blob store (training)
        self._speeds: list[float] = []  # tokens/s of this process's steps (services/throughput.py)
        self.job_dir = settings.jobs_dir / lease.job_id
        self.lost = threading.Event()  # set when the lease was taken away
        self._stop = threading.Event()  # set when this runner is done with the job
        self.child: TrainingChild | None = None
        self._steps_per_epoch = 1
        self._t_first: tuple[float, int] | None = None
        self._base_model: str | None = None
        self._training: dict[str, Any] = {}  # device, precision, checkpointing of the child (``started``)
        self._safety_seconds = 0.0  # expected length of the post-training safety evaluation
        self._secret: bytes | None = None  # the org's data key (base64) for the training child
        self._wandb: wandb_sink.NoSink = wandb_sink.NoSink()  # the job's W&B run (integrations)

    # -- helpers -----------------------------------------------------------------------------

    def write(self, fn: Any) -> Any:
        """Run ``fn(session, job)`` in one fenced transaction."""
        with self.db.session() as s:
            job = fence(s, self.lease, self.settings.lease_seconds)
            return fn(s, job)

    def fail(self, error: dict[str, Any], *, event: str | None = None) -> None:
        def _do(s: Any, job: Job) -> None:
            job.status = JobStatus.FAILED
            job.error = error
            job.estimated_finish = None
            job.finished_at = int(self.db.now())
            repo.add_event(s, job, event or error["message"], level="error")
            outbox.emit(s, JOB_FAILED, job)  # the webhook event commits with the failure
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
        if self._sync is not None:  # and the resume state kept in the blob store for other workers
            self._sync.forget()

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
        with self.db.session() as s:
            job = repo.get_any(s, self.lease.job_id)
        return job is None or JobStatus(job.status) in TERMINAL

    def _bill_if_cancelled(self) -> None:
        # BILLING HOOK: a cancelled job is billed once for the tokens of its last recorded step.
        try:
            self.usage.settle_job(self.lease.job_id)
        except Exception:  # metering never takes the worker down; the usage API settles it later
            log.exception("job %s: billing the cancelled job failed", self.lease.job_id)

    def validate(self, job: Job) -> Job | None:
        try:
            result = self.pipeline.validation.validate_job(job)
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

        entry = self.catalog.require(job.model)
        self.job_dir.mkdir(parents=True, exist_ok=True)
        # The child reads the encrypted blobs itself and gets the data key on its stdin: no
        # plaintext copy of the training data is ever written.
        train = self.files.get(job.org_id, job.training_file).blob_key
        valid = self.files.get(job.org_id, job.validation_file).blob_key if job.validation_file else None
        self._secret = base64.b64encode(self.keys.data_key(job.org_id))
        inputs = self.job_dir / "inputs"
        hyper = job.resolved_hyperparameters or {}
        spec = TrainSpec(
            base_model_path=str(self.catalog.local_path(entry, self.settings.models_dir)),
            # Ciphertext, fetched from the blob store when it is not on this machine (S3).
            train_file=str(self.blobs.local_file(train, inputs / "train.blob")),
            valid_file=str(self.blobs.local_file(valid, inputs / "valid.blob")) if valid else None,
            train_blob_key=train,
            valid_blob_key=valid,
            output_dir=str(self.job_dir),
            n_epochs=int(hyper["n_epochs"]),
            batch_size=int(hyper["batch_size"]),
            learning_rate_multiplier=float(hyper["learning_rate_multiplier"]),
            objective="dpo" if job.method.get("type") == "dpo" else "supervised",
            beta=float(hyper.get("beta") or DEFAULT_BETA),  # DPO's (resolved at validation)
            seed=job.seed,
            max_length=entry.context_length,
            lora_target_modules=list(entry.lora_target_modules),
            checkpoint_every_steps=self.settings.checkpoint_every_steps,
            resume_from=resume_from,
            threads=self.settings.train_threads,
            step_delay_seconds=self.settings.train_step_delay_seconds,
            device=child_device(self.settings.train_device, self.settings.worker_devices),
            precision=self.settings.train_precision,
            gradient_checkpointing=self.settings.train_gradient_checkpointing,
            compile=self.settings.train_compile,
            sharding=self.settings.train_sharding,
            peak_flops=self.settings.train_peak_flops,
            quantization="nf4" if job.quantization == "nf4" else "none",
        )
        path = self.job_dir / "spec.json"
        path.write_text(spec.model_dump_json(indent=2))
        return path

    def train(self, job: Job) -> None:
        self._sync = CheckpointSync(
            artefacts=self.artefacts, blobs=self.blobs, org_id=job.org_id, job_id=job.id, job_dir=self.job_dir
        )
        local = self._sync.local(job.resume_checkpoint)  # this worker's copy, or fetched from the store
        resume_from = str(local) if local is not None else None

        def _running(s: Any, j: Job) -> Job:
            first = j.started_at is None
            j.status = JobStatus.RUNNING
            j.started_at = j.started_at or int(self.db.now())
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
        self.child = TrainingChild(
            spec_path,
            self.job_dir / "child.log",
            secret=self._secret,
            processes=self.settings.train_processes,
            launcher_args=shlex.split(self.settings.train_launcher_args),
        )
        self._wandb = wandb_sink.start(job, data_dir=self.settings.data_dir, note=self._warn)
        try:
            self._pump(self.child)
        finally:
            if self.child.proc.poll() is None:
                self.child.kill()
            with self.db.session() as s:
                outcome = repo.get_any(s, self.lease.job_id)
            self._wandb.finish(outcome)

    def _warn(self, message: str) -> None:
        """A warning event on the job (fenced, like every write)."""
        self.write(lambda s, j: repo.add_event(s, j, message, level="warn"))

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_seconds):
            try:
                status = heartbeat(self.db, self.lease, self.settings.lease_seconds)
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

        hardware = training_hardware(ev)
        if hardware:  # a child of this version says where it trains (a resumed run may move)
            self._training = hardware

        def _do(s: Any, j: Job) -> None:
            j.total_steps = int(ev["total_steps"])
            if hardware:
                repo.add_event(s, j, hardware_message(hardware), data=hardware)

        self.write(_do)

    def _on_step(self, ev: dict[str, Any]) -> None:
        step, total = int(ev["step"]), int(ev["total_steps"])
        tps, device = ev.get("tokens_per_second"), ev.get("device_kind")
        if isinstance(tps, int | float) and tps > 0:
            self._speeds.append(float(tps))
        eta = None
        if self._t_first is not None and step > self._t_first[1]:
            per_step = (time.monotonic() - self._t_first[0]) / (step - self._t_first[1])
            first = step == self._t_first[1] + 1
            if first and isinstance(device, str):
                # One step says little (warm-up, compilation): the speed measured on this base and
                # device by earlier jobs, when there is one, gives the first ETA.
                per_step = self._measured_seconds_per_step(step, ev) or per_step
            # The model is published after the safety evaluation: its expected time counts too.
            eta = int(self.db.now() + per_step * (total - step) + self._safety_seconds)

        def _do(s: Any, j: Job) -> str:
            j.current_step = step
            j.estimated_finish = eta
            repo.add_event(s, j, step_message(ev), type_="metrics", data=step_metrics(ev))
            # BILLING HOOK: tokens trained so far, what a cancellation bills.
            self.usage.note_progress(s, j, step, int(ev.get("trained_tokens") or 0))
            return str(j.model)

        self._base_model = self.write(_do)
        self._wandb.log(step_metrics(ev))
        if isinstance(device, str) and (step == total or step % self._steps_per_epoch == 0):
            # Each epoch end and the last step: this run's steady speed, for later estimates.
            self.throughput.record(self._base_model, device, self._speeds, job_id=self.lease.job_id)

    def _measured_seconds_per_step(self, step: int, ev: dict[str, Any]) -> float | None:
        """Seconds per step at the speed measured on this base and device (None: never measured)."""
        if self._base_model is None:
            self._base_model = str(self.write(lambda s, j: j.model))
        speed = self.throughput.speed(self._base_model, str(ev["device_kind"]))
        tokens_per_step = int(ev.get("trained_tokens") or 0) / max(step, 1)
        if speed.device != ev["device_kind"] or tokens_per_step <= 0:  # another device's speed misleads
            return None
        return tokens_per_step / speed.tokens_per_second

    def _on_checkpoint(self, ev: dict[str, Any]) -> None:
        step = int(ev["step"])
        epoch_end = step % self._steps_per_epoch == 0 or step == self._total()
        self._upload(ev, published=epoch_end)

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
                        created_at=int(self.db.now()),
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
        with self.db.session() as s:
            job = repo.get_any(s, self.lease.job_id)
            return int(job.total_steps or 0) if job else 0

    def _upload(self, ev: dict[str, Any], *, published: bool) -> None:
        """Seal a checkpoint into the blob store before the job points at it (checkpoint_sync.py)."""
        if self._sync is not None:
            self._sync.upload(Path(ev["path"]), published=published)

    def _on_paused(self, ev: dict[str, Any]) -> None:
        self._upload(ev, published=False)

        def _do(s: Any, j: Job) -> None:
            j.resume_checkpoint = ev["path"]
            j.estimated_finish = None
            repo.add_event(s, j, f"Checkpoint saved at step {ev['step']}; the job is paused")
            release(s, self.lease)

        self.write(_do)

    def _expected_safety_seconds(self, job: Job) -> float:
        """How long the safety evaluation after training should take (docs/safety.md); 0 when off."""
        try:
            return self.pipeline.safety.expected_seconds(job.model)
        except Exception:  # an estimate only: never fail the job over it
            log.exception("job %s: estimating the safety evaluation failed", job.id)
            return 0.0

    def _on_done(self, ev: dict[str, Any]) -> None:
        """Training finished: the gates judge the adapter, then it is published (or the job fails)."""
        peak = ev.get("peak_memory_bytes")
        training = dict(self._training)
        if isinstance(peak, int):
            training["peak_memory_bytes"] = peak
        trained = TrainedAdapter(
            adapter_path=Path(ev["adapter_path"]),
            trained_tokens=int(ev["trained_tokens"]),
            step=int(ev["step"]),
            training=training,
        )

        def _finished(s: Any, j: Job) -> Job:
            if isinstance(peak, int):
                repo.add_event(s, j, f"Peak memory {format_bytes(peak)}", data={"peak_memory_bytes": peak})
            return j

        job = self.write(_finished)
        checks: dict[str, Any] = {}  # each gate's verdict, for the model card
        verdict = self.pipeline.safety.check(
            job, trained.adapter_path, write=self.write, expected_seconds=self._safety_seconds
        )
        if not self._passes(verdict, checks):
            return
        # EVAL GATE HOOK (afinar.worker.eval_gate): a gated job is judged before its model is published.
        verdict = self.pipeline.eval_gate.check(
            job, trained.adapter_path, write=self.write, should_stop=self.lost.is_set
        )
        if not self._passes(verdict, checks):
            return
        self.pipeline.publisher.publish(
            job, trained, checks, write=self.write, release=lambda s: release(s, self.lease)
        )
        self.cleanup_scratch()
        self.remove_job_dir()

    def _passes(self, verdict: GateVerdict | None, checks: dict[str, Any]) -> bool:
        """Note a gate's verdict (None: the gate does not apply) in ``checks``; a gate only judges,
        the runner fails the job (nothing billed, the model never served) when it did not pass."""
        if verdict is None:
            return True
        checks[verdict.gate] = verdict.details
        if verdict.passed:
            return True
        self.fail(verdict.job_error())
        return False

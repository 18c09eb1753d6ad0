"""The worker: lanes of threads that claim work and run it. Embedded in ``afinar serve`` or alone.

Two lanes (docs/architecture.md, "Worker lanes"), so short work never waits behind training:

* the **short lane** (``AFINAR_WORKER_SHORT_SLOTS`` threads, default 2) validates the files of new
  jobs (``validating_files`` → ``queued``, or ``failed`` with the file's error) and runs standalone
  eval runs; a validation always goes first, and eval runs take at most all but one of its threads
  so a long eval never holds up a validation;
* the **training lane** (``AFINAR_WORKER_TRAINING_SLOTS`` threads, default 1) trains ``queued`` jobs
  (and recovers ``running`` jobs whose worker died), then runs the safety and eval gates and
  publishes the model.

A third, one-thread lane sends the webhook outbox's due deliveries (worker/webhooks.py); ``run_once``
leaves it out (tests drive ``webhooks_once`` or the dispatcher themselves).

``run_once`` drives every lane once in the calling thread (tests and scripts drain the queue with
``while worker.run_once(): pass``).

A worker advertises its devices (``AFINAR_WORKER_DEVICES``; training/hardware.py) in its row of
the ``workers`` table, heartbeats it, and claims for training only jobs whose base model its
devices can train; it explains, once, a queued job that no live worker can run
(docs/architecture.md, "Devices"; services/workers.py).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING

from afinar.queue.leases import Lease, claim
from afinar.store import idempotency
from afinar.worker.checkpoint_sync import sweep_resume_state
from afinar.worker.runner import JobPipeline, JobRunner, sweep_job_dirs

if TYPE_CHECKING:
    from afinar.domain.hardware import Devices
    from afinar.services.container import Container
    from afinar.worker.eval_gate import EvalGate
    from afinar.worker.eval_runs import EvalRunner
    from afinar.worker.webhooks import WebhookDispatcher

log = logging.getLogger("afinar.worker")


class Worker:
    def __init__(self, c: Container, name: str | None = None) -> None:
        self.c = c
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lanes: list[threading.Thread] = []
        self._next_sweep = 0.0
        self._evals_lock = threading.Lock()
        self._evals_running = 0
        self._register_lock = threading.Lock()
        self._registered = False
        self._next_heartbeat = 0.0

    @cached_property
    def devices(self) -> Devices:
        """What this worker advertises (probed once; ``AFINAR_WORKER_DEVICES`` may hide its GPUs)."""
        from afinar.training.hardware import probe

        return probe(self.c.settings.worker_devices)

    @cached_property
    def unable_models(self) -> list[str]:
        """The catalogue's bases this worker's devices cannot train: it never claims their jobs."""
        return self.c.workers.unable_models(self.devices)

    @cached_property
    def nf4_only_models(self) -> list[str]:
        """The bases this worker trains only as QLoRA: it claims only their ``nf4`` jobs."""
        return self.c.workers.nf4_only_models(self.devices)

    def register(self) -> None:
        """Write this worker's row (lanes, devices, heartbeat) in the ``workers`` table."""
        s = self.c.settings
        with self._register_lock:
            self.c.workers.register(
                self.name,
                host=socket.gethostname(),
                lanes={"training": s.worker_training_slots, "short": s.worker_short_slots},
                devices=self.devices,
            )
            self._registered = True
            self._next_heartbeat = self.c.clock() + s.heartbeat_seconds
        log.info("worker %s: devices %s", self.name, self.devices.summary())

    def _ensure_registered(self) -> None:
        if not self._registered:
            self.register()

    def heartbeat_if_due(self) -> None:
        """Every ``heartbeat_seconds``: stamp this worker's row (registering again if it is gone)."""
        if self.c.clock() < self._next_heartbeat:
            return
        self._next_heartbeat = self.c.clock() + self.c.settings.heartbeat_seconds
        if not self.c.workers.heartbeat(self.name):
            self.register()

    @cached_property
    def eval_runner(self) -> EvalRunner:
        """Executes eval runs: queued standalone runs, and the runs of eval gates."""
        from afinar.worker.eval_runs import EvalRunner

        c = self.c
        return EvalRunner(
            db=c.db,
            chat=c.chat,
            engine=lambda: c.engine,
            limits=c.spend_limits,
            usage=c.usage,
            sealed=c.sealed,
            settings=c.settings,
        )

    @cached_property
    def eval_gate(self) -> EvalGate:
        """The fine-tuning eval gate the job runner checks before publishing a model."""
        from afinar.worker.eval_gate import EvalGate

        c = self.c
        return EvalGate(
            db=c.db, runs=c.eval_runs, runner=self.eval_runner, catalog=c.catalog, settings=c.settings
        )

    @cached_property
    def pipeline(self) -> JobPipeline:
        """The steps of a job around its training: validation, the safety and eval gates, publication."""
        c = self.c
        return JobPipeline(
            validation=c.validation, safety=c.safety_gate, eval_gate=self.eval_gate, publisher=c.publisher
        )

    def runner(self, lease: Lease) -> JobRunner:
        """The runner of one claimed job."""
        c = self.c
        return JobRunner(
            lease,
            db=c.db,
            settings=c.settings,
            catalog=c.catalog,
            files=c.files,
            keys=c.keys,
            blobs=c.blobs,
            usage=c.usage,
            pipeline=self.pipeline,
            throughput=c.throughput,
            artefacts=c.artefacts,
        )

    # -- one unit of work per lane -------------------------------------------------------------

    def validate_once(self, owner: str | None = None) -> bool:
        """Validate one new job's files; it ends ``queued`` (released) or ``failed``. False: none."""
        s = self.c.settings
        lease = claim(self.c.db, owner or self.name, s.lease_seconds, lane="validate")
        if lease is None:
            return False
        log.info("worker %s validates %s", lease.owner, lease.job_id)
        self.runner(lease).run()
        return True

    def train_once(self, owner: str | None = None) -> bool:
        """Train one queued (or abandoned) job to its next resting state. False: none waiting."""
        s = self.c.settings
        self._ensure_registered()
        limit = s.max_concurrent_jobs_per_org
        unable, nf4_only = self.unable_models, self.nf4_only_models
        lease = claim(
            self.c.db,
            owner or self.name,
            s.lease_seconds,
            max_per_org=limit,
            lane="train",
            exclude_models=unable,
            exclude_unquantized=nf4_only,
        )
        if lease is None:
            if unable or nf4_only:  # a job only other devices can train: say so once if none can
                self.c.workers.note_waiting(unable, nf4_only)
            return False
        log.info("worker %s trains %s", lease.owner, lease.job_id)
        self.runner(lease).run()
        return True

    @cached_property
    def webhook_dispatcher(self) -> WebhookDispatcher:
        """Sends the webhook outbox's due deliveries (worker/webhooks.py)."""
        from afinar.worker.webhooks import WebhookDispatcher

        return WebhookDispatcher(db=self.c.db, deliverer=self.c.webhook_deliverer)

    def webhooks_once(self, owner: str | None = None) -> bool:
        """The webhook lane's step: one attempt of a due delivery. False: none due."""
        return self.webhook_dispatcher.run_once(owner or self.name)

    def eval_once(self, owner: str | None = None) -> bool:
        """Run one queued standalone eval run (afinar.worker.eval_runs). False: none waiting."""
        return self.eval_runner.run_queued(owner or self.name)

    def short_once(self, owner: str | None = None) -> bool:
        """The short lane's step: a validation first; else an eval run, while the lane keeps a
        thread free for validations (with two threads or more)."""
        if self.validate_once(owner):
            return True
        limit = max(1, self.c.settings.worker_short_slots - 1)
        with self._evals_lock:
            if self._evals_running >= limit:
                return False
            self._evals_running += 1
        try:
            return self.eval_once(owner)
        finally:
            with self._evals_lock:
                self._evals_running -= 1

    def run_once(self) -> bool:
        """Every lane once, in this thread: validate one job, then train one; run an eval run only
        when there was neither (as before lanes: jobs first). False when there was nothing to do."""
        validated = self.validate_once()
        trained = self.train_once()
        if validated or trained:
            return True
        return self.eval_once()

    # -- housekeeping ---------------------------------------------------------------------------

    def sweep_if_due(self) -> list[str]:
        """Every ``retention_sweep_seconds``: expired files become tombstones (services/retention),
        Idempotency-Key answers older than ``idempotency_ttl_hours`` are forgotten, and the resume
        checkpoints of jobs that ended unattended are removed (worker/checkpoint_sync.py)."""
        now = self.c.clock()
        if now < self._next_sweep:
            return []
        self._next_sweep = now + self.c.settings.retention_sweep_seconds
        idempotency.sweep(self.c.db, now - self.c.settings.idempotency_ttl_hours * 3600)
        expired = self.c.retention.sweep()
        sweep_resume_state(self.c.db, self.c.blobs)  # checkpoints of jobs that ended unattended
        return expired

    def _prime(self) -> None:
        """Build the container's shared services in this thread, before lane threads race for them."""
        c = self.c
        primed = (c.keys, c.sealed, c.files, c.jobs, c.usage, c.artefacts, c.workers, self.pipeline)
        log.debug("worker %s: %d shared services built", self.name, len(primed))

    # -- threads --------------------------------------------------------------------------------

    def _lane(self, step: Callable[[str], bool], owner: str) -> None:
        while not self.stop.is_set():
            try:
                busy = step(owner)
            except Exception:
                log.exception("worker %s: iteration failed", owner)
                busy = False
            if not busy:
                self.stop.wait(self.c.settings.poll_seconds)

    def start_lanes(self) -> list[threading.Thread]:
        """Start the lane threads (daemons; they stop when ``stop`` is set)."""
        s = self.c.settings
        self._prime()
        self._ensure_registered()
        plan: list[tuple[str, Callable[[str], bool], int]] = [
            ("short", self.short_once, s.worker_short_slots),
            ("train", self.train_once, s.worker_training_slots),
            ("webhooks", self.webhooks_once, 1),  # the webhook outbox, never behind training
        ]
        if not s.worker_short_slots or not s.worker_training_slots:
            log.warning(
                "worker %s: %d short-work and %d training threads; a lane without threads never runs here",
                self.name,
                s.worker_short_slots,
                s.worker_training_slots,
            )
        for lane, step, slots in plan:
            for i in range(slots):
                owner = f"{self.name}/{lane}-{i}"
                t = threading.Thread(
                    target=self._lane, args=(step, owner), name=f"afinar-{lane}-{i}", daemon=True
                )
                t.start()
                self._lanes.append(t)
        log.info(
            "worker %s: %d training and %d short-work threads",
            self.name,
            s.worker_training_slots,
            s.worker_short_slots,
        )
        return list(self._lanes)

    def run_forever(self) -> None:
        """Run every lane on its own threads and the periodic sweeps in this one, until ``stop``."""
        try:  # plaintext checkpoints of jobs that ended while no worker ran (crash, cancel)
            sweep_job_dirs(self.c.db, self.c.settings.jobs_dir)
        except Exception:
            log.exception("sweeping finished job directories failed")
        self.register()  # before the lanes: AFINAR_WORKER_DEVICES=cuda without a GPU stops here
        self.start_lanes()
        try:
            while not self.stop.is_set():
                try:
                    self.sweep_if_due()
                except Exception:
                    log.exception("retention sweep failed")
                try:
                    self.heartbeat_if_due()
                except Exception:
                    log.exception("worker heartbeat failed")
                self.stop.wait(self.c.settings.poll_seconds)
        finally:
            self.stop.set()
            self._join(timeout=5.0)
            self._unregister()

    def _unregister(self) -> None:
        """A clean stop removes the row; a lane still finishing a job keeps it (it goes stale)."""
        if any(t.is_alive() for t in self._lanes):
            return
        try:
            self.c.workers.unregister(self.name)
        except Exception:
            log.exception("worker %s: removing its row failed", self.name)

    def _join(self, timeout: float) -> None:
        """Wait, ``timeout`` seconds in all, for the lanes to stop. A lane in the middle of a job
        finishes it first: a training lane may outlive the wait; its child dies with the process
        (PR_SET_PDEATHSIG) and another worker resumes the job once the lease expires."""
        deadline = time.monotonic() + timeout
        for t in self._lanes:
            t.join(max(0.0, deadline - time.monotonic()))

    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.run_forever, name="afinar-worker", daemon=True)
        self._thread.start()
        return self._thread

    def shutdown(self, timeout: float = 10.0) -> None:
        self.stop.set()
        if self._thread is not None:  # run_forever joins its lanes on the way out
            self._thread.join(timeout)
        else:
            self._join(timeout)

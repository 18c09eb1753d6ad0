"""The worker loop: claim a job, run it, repeat. Embedded in ``afinar serve`` or alone."""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import TYPE_CHECKING

from afinar.queue.leases import claim
from afinar.worker.runner import JobRunner, sweep_job_dirs

if TYPE_CHECKING:
    from afinar.services.container import Container

log = logging.getLogger("afinar.worker")


class Worker:
    def __init__(self, c: Container, name: str | None = None) -> None:
        self.c = c
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_sweep = 0.0

    def run_once(self) -> bool:
        """Claim and run one job; False when there was nothing to do."""
        s = self.c.settings
        lease = claim(self.c.db, self.name, s.lease_seconds, max_per_org=s.max_concurrent_jobs_per_org)
        if lease is None:
            # EVALS HOOK: with no fine-tuning job waiting, run one queued eval run (afinar.worker.evals).
            from afinar.worker.evals import run_queued_eval

            return run_queued_eval(self.c, self.name)
        log.info("worker %s claimed %s", self.name, lease.job_id)
        JobRunner(self.c, lease).run()
        return True

    def sweep_if_due(self) -> list[str]:
        """Every ``retention_sweep_seconds``: expired files become tombstones (services/retention)."""
        now = self.c.clock()
        if now < self._next_sweep:
            return []
        self._next_sweep = now + self.c.settings.retention_sweep_seconds
        from afinar.services.retention import sweep

        return sweep(self.c)

    def run_forever(self) -> None:
        try:  # plaintext checkpoints of jobs that ended while no worker ran (crash, cancel)
            sweep_job_dirs(self.c)
        except Exception:
            log.exception("sweeping finished job directories failed")
        while not self.stop.is_set():
            try:
                self.sweep_if_due()
            except Exception:
                log.exception("retention sweep failed")
            try:
                busy = self.run_once()
            except Exception:
                log.exception("worker iteration failed")
                busy = False
            if not busy:
                self.stop.wait(self.c.settings.poll_seconds)

    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.run_forever, name="afinar-worker", daemon=True)
        self._thread.start()
        return self._thread

    def shutdown(self, timeout: float = 10.0) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

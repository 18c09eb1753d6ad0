"""Workers and what they can run (docs/architecture.md, "Devices").

A worker registers its lanes and devices in the ``workers`` table and heartbeats it; it claims for
training only jobs whose base model's catalogue requirement, in the job's mode, its devices meet
(``unable_models`` and ``nf4_only_models`` go to ``queue.leases.claim``): a QLoRA job
(``quantization: "nf4"``) needs the entry's ``min_gpu_memory_gb_nf4`` when it has one. A job
that no live training worker can run stays ``queued`` and gets one ``waiting_for_worker`` event
saying why (``note_waiting``); it runs as soon as a capable worker claims it. Rows are written
with the container's clock; a stale row (no heartbeat within ``LIVE_LEASES`` lease periods) is
shown as such and blocks nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from afinar.domain.hardware import NF4, Devices, Requirement, WorkerState, describe_workers
from afinar.queue.leases import stranded
from afinar.store import jobs as jobs_repo
from afinar.store import workers as repo

if TYPE_CHECKING:
    from afinar.catalog.registry import Catalog
    from afinar.store.db import Database

LIVE_LEASES = 3  # a worker is live while its last heartbeat is this many lease periods old at most
FORGET_SECONDS = 7 * 24 * 3600  # rows silent this long are deleted when a worker registers
WAITING_EVENT = "waiting_for_worker"


class WorkersService:
    def __init__(self, *, db: Database, catalog: Catalog, lease_seconds: float) -> None:
        self.db = db
        self.catalog = catalog
        self.live_seconds = LIVE_LEASES * lease_seconds

    # -- the worker's own row -------------------------------------------------------------------

    def register(self, name: str, *, host: str, lanes: dict[str, int], devices: Devices) -> None:
        """Write (or rewrite) this worker's row; forget workers silent for a week."""
        now = self.db.now()
        with self.db.session() as s:
            repo.prune(s, now - FORGET_SECONDS)
            repo.upsert(s, name, host=host, lanes=lanes, devices=devices.to_json(), now=now)

    def heartbeat(self, name: str) -> bool:
        """Stamp the row; False when it is gone (the worker registers again)."""
        with self.db.session() as s:
            return repo.touch(s, name, self.db.now())

    def unregister(self, name: str) -> None:
        """A clean stop: the row goes (a crashed worker's row stays, shown stale)."""
        with self.db.session() as s:
            repo.remove(s, name)

    # -- what runs where ------------------------------------------------------------------------

    def requirement(self, model: str, quantization: str | None = None) -> Requirement:
        """What a job on base ``model`` in ``quantization`` mode needs (its catalogue entry;
        unknown: runs anywhere)."""
        entry = self.catalog.get(model)
        return entry.requirement(quantization) if entry is not None else Requirement()

    def unable_models(self, devices: Devices) -> list[str]:
        """The catalogue's bases whose jobs ``devices`` cannot train in any mode, QLoRA included
        (``claim(exclude_models=…)``)."""
        return [m for m in self.catalog.ids() if not self.requirement(m, NF4).met_by(devices)]

    def nf4_only_models(self, devices: Devices) -> list[str]:
        """The catalogue's bases ``devices`` can train only as QLoRA (``quantization: "nf4"``):
        ``claim(exclude_unquantized=…)``. An entry's NF4 requirement never exceeds its bf16 one."""
        return [
            m
            for m in self.catalog.ids()
            if self.requirement(m, NF4).met_by(devices) and not self.requirement(m).met_by(devices)
        ]

    def states(self) -> list[WorkerState]:
        """Every registered worker, live or stale, with the jobs it holds a live lease on."""
        now = self.db.now()
        with self.db.session() as s:
            rows = repo.all_rows(s)
            owners = repo.lease_owners(s, now)
        out = []
        for r in rows:
            held = sum(1 for o in owners if o == r.id or o.startswith(r.id + "/"))
            out.append(
                WorkerState(
                    name=r.id,
                    host=r.host,
                    lanes={str(k): int(v) for k, v in (r.lanes or {}).items()},
                    devices=Devices.from_json(r.devices),
                    started_at=r.started_at,
                    heartbeat_at=r.heartbeat_at,
                    live=now - r.heartbeat_at <= self.live_seconds,
                    jobs_held=held,
                )
            )
        return out

    def note_waiting(self, unable: Sequence[str], nf4_only: Sequence[str] = ()) -> list[str]:
        """Explain, once per job, the trainable jobs a worker excluding ``unable`` bases (and the
        non-QLoRA jobs on ``nf4_only`` bases) skipped that no live training worker can run: a
        ``waiting_for_worker`` warning event, the job still queued. Returns their ids."""
        pending = stranded(self.db, unable, unquantized=nf4_only)
        if not pending:
            return []
        trainers = [w for w in self.states() if w.live and w.trains]
        noted = []
        for job_id, model, quantization in pending:
            need = self.requirement(model, quantization)
            if any(need.met_by(w.devices) for w in trainers):
                continue  # a capable worker is busy or about to claim it: nothing to explain
            reason = need.describe()
            hint = ""
            if quantization == NF4:
                reason += " for QLoRA (nf4)"
            else:
                qlora = self.requirement(model, NF4)
                if qlora != need:  # the base has a smaller QLoRA requirement: say so
                    hint = f' (as QLoRA, "quantization": "nf4", it needs {qlora.describe()})'
            message = (
                f"Waiting for a worker: base model {model} needs {reason}{hint}; "
                f"live workers: {describe_workers(trainers)}"
            )
            with self.db.session() as s:
                job = repo.mark_waiting(s, job_id, reason)
                if job is None:
                    continue
                jobs_repo.add_event(
                    s,
                    job,
                    message,
                    level="warn",
                    type_=WAITING_EVENT,
                    data={
                        "quantization": quantization,
                        "requires_gpu": need.gpu,
                        "min_gpu_memory_bytes": need.min_gpu_memory_bytes,
                        "live_workers": [w.devices.summary() for w in trainers],
                    },
                )
            noted.append(job_id)
        return noted

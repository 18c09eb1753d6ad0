"""Fine-tuning jobs: create (request checks only), list, retrieve, events, checkpoints, control."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from afinar import ids
from afinar.domain.jobs import JobSpec, JobStatus, can_cancel, can_pause, can_resume
from afinar.domain.webhooks import JOB_CANCELLED
from afinar.errors import InvalidRequest, NotFound
from afinar.queue.leases import revoke
from afinar.services import audit
from afinar.store import files as files_repo
from afinar.store import jobs as repo
from afinar.store import webhooks as outbox
from afinar.store.pagination import Page
from afinar.store.tables import Checkpoint, EvalGate, Job, JobEvent

if TYPE_CHECKING:
    from afinar.catalog.registry import Catalog
    from afinar.services.eval_gates import EvalGatesService
    from afinar.store.db import Database

MAX_SEED = 2147483647


@dataclass(frozen=True)
class JobRequest:
    """A job creation request checked against the catalogue and the database (seed drawn, gate parsed)."""

    model: str
    training_file: str
    validation_file: str | None
    method: dict[str, Any]
    requested: dict[str, Any]
    suffix: str | None
    seed: int
    metadata: dict[str, str] | None
    integrations: list[Any] | None
    eval_gate: dict[str, Any] | None = None
    quantization: str = "none"


def not_found(job_id: str) -> NotFound:
    return NotFound(f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id")


class JobsService:
    def __init__(self, *, db: Database, catalog: Catalog, eval_gates: EvalGatesService) -> None:
        self.db = db
        self.catalog = catalog
        self.gates = eval_gates

    def check_request(self, org_id: str, spec: JobSpec) -> JobRequest:
        """The checks of a job creation that need the catalogue or the database (400s); the request's
        shape was checked at the edge (``api/schemas/jobs.py``). File contents are not read here."""
        self.catalog.require(spec.model)
        with self.db.session() as s:
            for param, fid in (
                ("training_file", spec.training_file),
                ("validation_file", spec.validation_file),
            ):
                if fid is None:
                    continue
                row = files_repo.get(s, org_id, fid)
                if row is None:
                    raise InvalidRequest(f"invalid {param}: {fid}", param=param)
                if row.purpose != "fine-tune":
                    raise InvalidRequest(
                        f"File {fid} has purpose '{row.purpose}'; fine-tuning needs purpose 'fine-tune'.",
                        param=param,
                    )
        return JobRequest(
            model=spec.model,
            training_file=spec.training_file,
            validation_file=spec.validation_file,
            method={"type": spec.method},
            requested=dict(spec.hyperparameters),
            suffix=spec.suffix,
            seed=spec.seed if spec.seed is not None else random.randint(0, MAX_SEED),
            metadata=spec.metadata,
            integrations=spec.integrations,
            eval_gate=self.gates.parse(org_id, spec.eval_gate),
            quantization=spec.quantization,
        )

    def create(
        self,
        org_id: str,
        org_slug: str,
        spec: JobSpec,
        *,
        project_id: str | None = None,
        api_key_id: str | None = None,
    ) -> Job:
        req = self.check_request(org_id, spec)
        model, suffix = req.model, req.suffix
        training_file, validation_file = req.training_file, req.validation_file
        job = Job(
            id=ids.job_id(),
            org_id=org_id,
            project_id=project_id,
            api_key_id=api_key_id,
            model=model,
            training_file=training_file,
            validation_file=validation_file,
            status=JobStatus.VALIDATING_FILES,
            created_at=int(self.db.now()),
            suffix=suffix,
            seed=req.seed,
            method=req.method,
            requested_hyperparameters=req.requested,
            job_metadata=req.metadata,
            integrations=req.integrations,
            quantization=req.quantization if req.quantization != "none" else None,
            model_name=ids.fine_tuned_model_name(model, org_slug, suffix),
            result_files=[],
        )
        with self.db.session() as s:
            s.add(job)
            s.flush()
            if req.eval_gate is not None:
                self.gates.register(s, job, req.eval_gate)
            repo.add_event(s, job, f"Created fine-tuning job: {job.id}")
            files_msg = f"Validating training file: {training_file}"
            if validation_file:
                files_msg += f" and validation file: {validation_file}"
            repo.add_event(s, job, files_msg)
        audit.record(self.db, audit.JOB_CREATED, org_id, job.id, project_id=project_id, data={"model": model})
        return job

    def get(self, org_id: str, job_id: str) -> Job:
        with self.db.session() as s:
            job = repo.get(s, org_id, job_id)
        if job is None:
            raise not_found(job_id)
        return job

    def list(
        self,
        org_id: str,
        *,
        after: str | None,
        limit: int,
        metadata: dict[str, str] | None,
        no_metadata: bool,
    ) -> Page[Job]:
        _check_limit(limit)
        with self.db.session() as s:
            return repo.list_page(
                s, org_id, after=after, limit=limit, metadata=metadata, no_metadata=no_metadata
            )

    def eval_gates(self, jobs: Iterable[Job]) -> dict[str, EvalGate]:
        """The eval gates of these jobs, by job id (jobs without one are left out)."""
        out = {}
        with self.db.session() as s:
            for job in jobs:
                gate = s.get(EvalGate, job.id)
                if gate is not None and gate.org_id == job.org_id:
                    out[job.id] = gate
        return out

    def events(self, org_id: str, job_id: str, *, after: str | None, limit: int) -> Page[JobEvent]:
        _check_limit(limit)
        self.get(org_id, job_id)
        with self.db.session() as s:
            return repo.events_page(s, job_id, after=after, limit=limit)

    def checkpoints(self, org_id: str, job_id: str, *, after: str | None, limit: int) -> Page[Checkpoint]:
        """Epoch-end checkpoints of the last three epochs, newest first."""
        _check_limit(limit)
        self.get(org_id, job_id)
        with self.db.session() as s:
            rows = repo.checkpoints(s, job_id)[:3]
        if after:
            idx = next((i for i, r in enumerate(rows) if r.id == after), None)
            rows = rows[idx + 1 :] if idx is not None else rows
        return Page(items=rows[:limit], has_more=len(rows) > limit)

    def cancel(self, org_id: str, job_id: str) -> Job:
        with self.db.session() as s:
            job = repo.get(s, org_id, job_id)
            if job is None:
                raise not_found(job_id)
            if not can_cancel(job.status):
                raise InvalidRequest(f"Job has already {job.status}; it cannot be cancelled.", param="job_id")
            job.status = JobStatus.CANCELLED
            job.finished_at = int(self.db.now())
            job.estimated_finish = None
            revoke(s, job)  # a worker training it loses its lease and stops the child
            repo.add_event(s, job, "Fine-tuning job cancelled")
            outbox.emit(s, JOB_CANCELLED, job)  # the webhook event commits with the cancellation
        audit.record(self.db, audit.JOB_CANCELLED, org_id, job_id, project_id=job.project_id)
        return job

    def pause(self, org_id: str, job_id: str) -> Job:
        with self.db.session() as s:
            job = repo.get(s, org_id, job_id)
            if job is None:
                raise not_found(job_id)
            if not can_pause(job.status):
                raise InvalidRequest(
                    f"Only queued or running jobs can be paused; this one is {job.status}.", param="job_id"
                )
            job.status = JobStatus.PAUSED
            job.estimated_finish = None
            repo.add_event(s, job, "Fine-tuning job paused")
        return job

    def resume(self, org_id: str, job_id: str) -> Job:
        with self.db.session() as s:
            job = repo.get(s, org_id, job_id)
            if job is None:
                raise not_found(job_id)
            if not can_resume(job.status):
                raise InvalidRequest(
                    f"Only paused jobs can be resumed; this one is {job.status}.", param="job_id"
                )
            job.status = JobStatus.QUEUED
            repo.add_event(s, job, "Fine-tuning job resumed")
        return job


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= 10000:
        raise InvalidRequest("limit must be between 1 and 10000", param="limit")

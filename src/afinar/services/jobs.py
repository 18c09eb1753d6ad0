"""Fine-tuning jobs: create (request checks only), list, retrieve, events, checkpoints, control."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from afinar import ids
from afinar.datasets import hyperparameters as hp
from afinar.domain.jobs import JobStatus, can_cancel, can_pause, can_resume
from afinar.errors import InvalidRequest, NotFound
from afinar.queue.leases import revoke
from afinar.services import audit
from afinar.services.evals import parse_gate, register_gate
from afinar.store import files as files_repo
from afinar.store import jobs as repo
from afinar.store.pagination import Page
from afinar.store.tables import Checkpoint, EvalGate, Job, JobEvent

if TYPE_CHECKING:
    from afinar.services.container import Container

SUFFIX_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SUPPORTED_METHODS = {"supervised"}


@dataclass(frozen=True)
class JobRequest:
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


def not_found(job_id: str) -> NotFound:
    return NotFound(f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id")


def _method(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (method echo, requested hyperparameters), checking types and ranges."""
    method = body.get("method") or {"type": "supervised"}
    if not isinstance(method, dict):
        raise InvalidRequest("method must be an object", param="method")
    mtype = method.get("type", "supervised")
    if mtype not in ("supervised", "dpo", "reinforcement"):
        raise InvalidRequest(f"Invalid method type: {mtype!r}", param="method.type")
    if mtype not in SUPPORTED_METHODS:
        raise InvalidRequest(
            f"method.type '{mtype}' is not supported by this server yet; use 'supervised'.",
            param="method.type",
        )
    nested = (method.get(mtype) or {}).get("hyperparameters")
    top = body.get("hyperparameters")
    if nested is not None and top is not None:
        raise InvalidRequest(
            "Give hyperparameters either in method or at the top level, not both.", param="hyperparameters"
        )
    if nested is not None:
        hp.check_ranges(nested, f"method.{mtype}.hyperparameters")
        requested = dict(nested)
    else:
        hp.check_ranges(top, "hyperparameters")
        requested = dict(top or {})
    return {"type": mtype}, requested


def _metadata(meta: Any) -> dict[str, str] | None:
    if meta is None:
        return None
    if not isinstance(meta, dict) or len(meta) > 16:
        raise InvalidRequest("metadata must be an object of at most 16 pairs", param="metadata")
    for k, v in meta.items():
        if not isinstance(v, str) or len(k) > 64 or len(v) > 512:
            raise InvalidRequest(
                "metadata keys are strings of at most 64 characters, values strings of at most 512",
                param="metadata",
            )
    return dict(meta)


class JobsService:
    def __init__(self, c: Container) -> None:
        self.c = c

    def check_request(self, org_id: str, body: dict[str, Any]) -> JobRequest:
        """Every request-level check of a job creation (400s); file contents are not read here."""
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidRequest("Missing required parameter: 'model'.", param="model")
        self.c.catalog.require(model)
        training_file = body.get("training_file")
        if not isinstance(training_file, str) or not training_file:
            raise InvalidRequest("Missing required parameter: 'training_file'.", param="training_file")
        validation_file = body.get("validation_file")
        with self.c.db.session() as s:
            for param, fid in (("training_file", training_file), ("validation_file", validation_file)):
                if fid is None:
                    continue
                row = files_repo.get(s, org_id, fid) if isinstance(fid, str) else None
                if row is None:
                    raise InvalidRequest(f"invalid {param}: {fid}", param=param)
                if row.purpose != "fine-tune":
                    raise InvalidRequest(
                        f"File {fid} has purpose '{row.purpose}'; fine-tuning needs purpose 'fine-tune'.",
                        param=param,
                    )
        method, requested = _method(body)
        suffix = body.get("suffix")
        if suffix is not None and (not isinstance(suffix, str) or not SUFFIX_RE.match(suffix)):
            raise InvalidRequest(
                "suffix must be 1 to 64 characters of letters, digits, '-' or '_'", param="suffix"
            )
        seed = body.get("seed")
        if seed is None:
            seed = random.randint(0, 2147483647)
        elif isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 2147483647:
            raise InvalidRequest("seed must be an integer between 0 and 2147483647", param="seed")
        integrations = body.get("integrations")
        if integrations is not None and not isinstance(integrations, list):
            raise InvalidRequest("integrations must be an array", param="integrations")
        return JobRequest(
            model=model,
            training_file=training_file,
            validation_file=validation_file,
            method=method,
            requested=requested,
            suffix=suffix,
            seed=seed,
            metadata=_metadata(body.get("metadata")),
            integrations=integrations,
            eval_gate=parse_gate(self.c, org_id, body.get("eval_gate")),
        )

    def create(
        self,
        org_id: str,
        org_slug: str,
        body: dict[str, Any],
        *,
        project_id: str | None = None,
        api_key_id: str | None = None,
    ) -> Job:
        req = self.check_request(org_id, body)
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
            created_at=int(self.c.clock()),
            suffix=suffix,
            seed=req.seed,
            method=req.method,
            requested_hyperparameters=req.requested,
            job_metadata=req.metadata,
            integrations=req.integrations,
            model_name=ids.fine_tuned_model_name(model, org_slug, suffix),
            result_files=[],
        )
        with self.c.db.session() as s:
            s.add(job)
            s.flush()
            if req.eval_gate is not None:
                register_gate(s, job, req.eval_gate)
            repo.add_event(s, job, f"Created fine-tuning job: {job.id}")
            files_msg = f"Validating training file: {training_file}"
            if validation_file:
                files_msg += f" and validation file: {validation_file}"
            repo.add_event(s, job, files_msg)
        audit.record(
            self.c.db, audit.JOB_CREATED, org_id, job.id, project_id=project_id, data={"model": model}
        )
        return job

    def get(self, org_id: str, job_id: str) -> Job:
        with self.c.db.session() as s:
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
        with self.c.db.session() as s:
            return repo.list_page(
                s, org_id, after=after, limit=limit, metadata=metadata, no_metadata=no_metadata
            )

    def eval_gates(self, jobs: Iterable[Job]) -> dict[str, EvalGate]:
        """The eval gates of these jobs, by job id (jobs without one are left out)."""
        out = {}
        with self.c.db.session() as s:
            for job in jobs:
                gate = s.get(EvalGate, job.id)
                if gate is not None and gate.org_id == job.org_id:
                    out[job.id] = gate
        return out

    def events(self, org_id: str, job_id: str, *, after: str | None, limit: int) -> Page[JobEvent]:
        _check_limit(limit)
        self.get(org_id, job_id)
        with self.c.db.session() as s:
            return repo.events_page(s, job_id, after=after, limit=limit)

    def checkpoints(self, org_id: str, job_id: str, *, after: str | None, limit: int) -> Page[Checkpoint]:
        """Epoch-end checkpoints of the last three epochs, newest first."""
        _check_limit(limit)
        self.get(org_id, job_id)
        with self.c.db.session() as s:
            rows = repo.checkpoints(s, job_id)[:3]
        if after:
            idx = next((i for i, r in enumerate(rows) if r.id == after), None)
            rows = rows[idx + 1 :] if idx is not None else rows
        return Page(items=rows[:limit], has_more=len(rows) > limit)

    def cancel(self, org_id: str, job_id: str) -> Job:
        with self.c.db.session() as s:
            job = repo.get(s, org_id, job_id)
            if job is None:
                raise not_found(job_id)
            if not can_cancel(job.status):
                raise InvalidRequest(f"Job has already {job.status}; it cannot be cancelled.", param="job_id")
            job.status = JobStatus.CANCELLED
            job.finished_at = int(self.c.clock())
            job.estimated_finish = None
            revoke(s, job)  # a worker training it loses its lease and stops the child
            repo.add_event(s, job, "Fine-tuning job cancelled")
        audit.record(self.c.db, audit.JOB_CANCELLED, org_id, job_id, project_id=job.project_id)
        return job

    def pause(self, org_id: str, job_id: str) -> Job:
        with self.c.db.session() as s:
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
        with self.c.db.session() as s:
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

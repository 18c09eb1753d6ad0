"""Wire shapes for fine-tuning jobs, events and checkpoints (contract §2.2-2.4)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from afinar.api.schemas.lists import listing
from afinar.domain.jobs import JobStatus
from afinar.store.pagination import Page
from afinar.store.tables import Checkpoint, EvalGate, Job, JobEvent

HYPER_KEYS = ("batch_size", "learning_rate_multiplier", "n_epochs")


def hyperparameters(job: Job) -> dict[str, Any]:
    resolved = job.resolved_hyperparameters or {}
    requested = job.requested_hyperparameters or {}
    return {k: resolved.get(k, requested.get(k, "auto")) for k in HYPER_KEYS}


def eval_gate_echo(gate: EvalGate | None) -> dict[str, Any] | None:
    """The job's additive ``eval_gate``: the gate as requested, its status and, once decided, its verdict."""
    if gate is None:
        return None
    return {**gate.spec, "status": gate.status, "verdict": gate.verdict}


def job_object(job: Job, eval_gate: EvalGate | None = None) -> dict[str, Any]:
    hyper = hyperparameters(job)
    mtype = job.method.get("type", "supervised")
    error = job.error or {"code": None, "message": None, "param": None}
    return {
        "id": job.id,
        "object": "fine_tuning.job",
        "created_at": job.created_at,
        "model": job.model,
        "status": job.status,
        "training_file": job.training_file,
        "validation_file": job.validation_file,
        "organization_id": job.org_id,
        "result_files": list(job.result_files or []),
        "fine_tuned_model": job.fine_tuned_model,
        "finished_at": job.finished_at,
        "trained_tokens": job.trained_tokens,
        "hyperparameters": hyper,
        "method": {"type": mtype, mtype: {"hyperparameters": hyper}},
        "error": error,
        "seed": job.seed,
        "estimated_finish": job.estimated_finish if job.status == JobStatus.RUNNING else None,
        "integrations": job.integrations or [],  # OpenAI answers [] when none was given
        "metadata": job.job_metadata,
        "user_provided_suffix": job.suffix,
        "usage_metrics": None,
        "shared_with_openai": False,
        "eval_gate": eval_gate_echo(eval_gate),
    }


def job_list(page: Page[Job], eval_gates: Mapping[str, EvalGate] | None = None) -> dict[str, Any]:
    gates = eval_gates or {}
    return {
        "object": "list",
        "data": [job_object(j, gates.get(j.id)) for j in page.items],
        "has_more": page.has_more,
    }


def event_object(ev: JobEvent) -> dict[str, Any]:
    return {
        "id": ev.id,
        "object": "fine_tuning.job.event",
        "created_at": ev.created_at,
        "level": ev.level,
        "message": ev.message,
        "type": ev.type,
        "data": ev.data if ev.data is not None else {},
    }


def event_list(page: Page[JobEvent]) -> dict[str, Any]:
    return {"object": "list", "data": [event_object(e) for e in page.items], "has_more": page.has_more}


def checkpoint_object(c: Checkpoint) -> dict[str, Any]:
    return {
        "id": c.id,
        "object": "fine_tuning.job.checkpoint",
        "created_at": c.created_at,
        "fine_tuned_model_checkpoint": c.model_name,
        "fine_tuning_job_id": c.job_id,
        "step_number": c.step_number,
        "metrics": c.metrics,
    }


def checkpoint_list(page: Page[Checkpoint]) -> dict[str, Any]:
    return listing(page.items, page.has_more, checkpoint_object)

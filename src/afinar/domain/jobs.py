"""The fine-tuning job state machine (contract §2.2), a checked creation request, a training result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from afinar.domain.evals import DataSource


class JobStatus(StrEnum):
    VALIDATING_FILES = "validating_files"
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
# Statuses a worker may claim (running only once its lease has expired: crash recovery).
CLAIMABLE = frozenset({JobStatus.VALIDATING_FILES, JobStatus.QUEUED, JobStatus.RUNNING})


def can_cancel(status: str) -> bool:
    return status not in TERMINAL


def can_pause(status: str) -> bool:
    return status in (JobStatus.QUEUED, JobStatus.RUNNING)


def can_resume(status: str) -> bool:
    return status == JobStatus.PAUSED


@dataclass(frozen=True)
class JobSpec:
    """A job creation request once its shape is checked (types, formats, hyperparameter ranges):
    what the API's request model and the dashboard's form build, and ``JobsService.create`` takes.
    What needs the database or the catalogue (the model exists, the files are the caller's, the
    eval gate's eval) is checked by the service."""

    model: str
    training_file: str
    validation_file: str | None = None
    method: str = "supervised"
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # as requested ("auto" or values)
    suffix: str | None = None
    seed: int | None = None  # None: the service draws one
    metadata: dict[str, str] | None = None
    integrations: list[Any] | None = None
    eval_gate: EvalGateSpec | None = None
    quantization: str = "none"  # "none" or "nf4" (QLoRA: LoRA on a 4-bit base), checked at the edge


@dataclass(frozen=True)
class EvalGateSpec:
    """A job's ``eval_gate`` checked for shape: the eval to run on the base and the tuned model,
    the ``completions`` data source (without its model) and the rule (at least one of the two
    rates). ``EvalGatesService.parse`` checks what needs the eval: the criterion, the items."""

    eval_id: str
    data_source: DataSource
    min_pass_rate: float | None = None
    beat_base_by: float | None = None
    testing_criteria: str | None = None


@dataclass(frozen=True)
class TrainedAdapter:
    """What the training child reported when it finished (its ``done`` line)."""

    adapter_path: Path
    trained_tokens: int
    step: int
    # device, precision, gradient_checkpointing (``started``) and peak_memory_bytes (``done``)
    training: dict[str, Any] = field(default_factory=dict)


# ``write(fn)`` runs ``fn(session, job)`` in one transaction fenced by the job's lease (the worker's
# ``JobRunner.write``): how a pipeline step records on a job it does not own.
FencedWrite = Callable[[Callable[[Any, Any], Any]], Any]

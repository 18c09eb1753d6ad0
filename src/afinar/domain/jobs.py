"""The fine-tuning job state machine (contract §2.2)."""

from __future__ import annotations

from enum import StrEnum


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

"""A job's progress and loss curves, read from its metrics events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from afinar.domain.jobs import TERMINAL, JobStatus, can_cancel, can_pause, can_resume

if TYPE_CHECKING:
    from afinar.services.container import Container
    from afinar.store.tables import Job, JobEvent

MAX_EVENTS = 10_000
SHOWN_EVENTS = 50


@dataclass(frozen=True)
class Progress:
    step: int
    total: int | None
    percent: float | None
    eta: int | None  # Unix seconds, while running
    done: bool
    can_cancel: bool
    can_pause: bool
    can_resume: bool


def progress(job: Job) -> Progress:
    total = job.total_steps
    step = job.current_step or 0
    if job.status == JobStatus.SUCCEEDED and total:
        step = total
    percent = min(100.0, 100.0 * step / total) if total else None
    return Progress(
        step=step,
        total=total,
        percent=percent,
        eta=job.estimated_finish if job.status == JobStatus.RUNNING else None,
        done=job.status in TERMINAL,
        can_cancel=can_cancel(job.status),
        can_pause=can_pause(job.status),
        can_resume=can_resume(job.status),
    )


def all_events(c: Container, org_id: str, job_id: str) -> list[JobEvent]:
    """Every event of the job, oldest first."""
    page = c.jobs.events(org_id, job_id, after=None, limit=MAX_EVENTS)
    return list(reversed(page.items))


def series(events: list[JobEvent]) -> dict[str, list[Any]]:
    """Per-step training and validation loss (None where a step had no validation); a DPO job's
    also its reward margin and preference accuracy (training/dpo.py), which the chart draws too."""
    by_step: dict[int, dict[str, Any]] = {}
    for ev in events:
        if ev.type == "metrics" and ev.data and "step" in ev.data:
            by_step[int(ev.data["step"])] = ev.data  # a resumed step replaces the older record
    steps = sorted(by_step)
    keys = ["train_loss", "valid_loss"]
    if any("dpo_loss" in by_step[s] for s in steps):
        keys += ["reward_margin", "preference_accuracy"]
    return {"steps": steps, **{k: [by_step[s].get(k) for s in steps] for k in keys}}


def last_losses(points: dict[str, list[Any]]) -> tuple[float | None, float | None]:
    train = next((v for v in reversed(points["train_loss"]) if v is not None), None)
    valid = next((v for v in reversed(points["valid_loss"]) if v is not None), None)
    return train, valid

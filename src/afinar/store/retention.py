"""Retention queries: each organisation's ``file_retention_days`` and the files still in use."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from afinar.domain.jobs import TERMINAL
from afinar.store.tables import Eval, EvalRun, Job, Organization

ACTIVE_RUN_STATUSES = ("queued", "in_progress")


def org_retentions(s: Session) -> list[tuple[str, int | None]]:
    """(organisation id, stored ``file_retention_days``) for every organisation."""
    return [(r[0], r[1]) for r in s.execute(select(Organization.id, Organization.file_retention_days))]


def _file_ids(value: Any) -> Iterator[str]:
    """Every ``file-…`` string anywhere in a JSON value (data sources, testing criteria)."""
    if isinstance(value, str):
        if value.startswith("file-"):
            yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _file_ids(v)
    elif isinstance(value, list):
        for v in value:
            yield from _file_ids(v)


def files_in_use(s: Session, org_id: str) -> set[str]:
    """Files a non-terminal fine-tuning job or a queued/running eval run of the organisation uses."""
    used: set[str] = set()
    jobs = s.execute(
        select(Job.training_file, Job.validation_file).where(
            Job.org_id == org_id, Job.status.not_in([str(t) for t in TERMINAL])
        )
    )
    for training, validation in jobs:
        used.update(f for f in (training, validation) if f)
    runs = s.execute(
        select(EvalRun.eval_id, EvalRun.data_source).where(
            EvalRun.org_id == org_id, EvalRun.status.in_(ACTIVE_RUN_STATUSES)
        )
    )
    eval_ids: set[str] = set()
    for eval_id, data_source in runs:
        eval_ids.add(eval_id)
        used.update(_file_ids(data_source))
    if eval_ids:
        for criteria in s.scalars(select(Eval.testing_criteria).where(Eval.id.in_(eval_ids))):
            used.update(_file_ids(criteria))
    return used

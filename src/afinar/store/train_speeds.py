"""Measured training speeds (``train_speeds``): one row per (base model, device kind)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from afinar.store.db import Database, upsert_insert
from afinar.store.tables import TrainSpeed


@dataclass(frozen=True)
class MeasuredSpeed:
    base_model: str
    device: str
    tokens_per_second: float
    n_steps: int
    job_id: str | None
    updated_at: int


def _plain(row: TrainSpeed) -> MeasuredSpeed:
    return MeasuredSpeed(
        row.base_model, row.device, row.tokens_per_second, row.n_steps, row.job_id, row.updated_at
    )


def save(
    db: Database, base_model: str, device: str, tokens_per_second: float, n_steps: int, job_id: str | None
) -> None:
    """Replace the speed of ``base_model`` on ``device``, committed on return.

    Two first writers of one (base, device) both land: the later one updates the row.
    """
    now = int(db.now())
    values = {"tokens_per_second": tokens_per_second, "n_steps": n_steps, "job_id": job_id, "updated_at": now}
    with db.session() as s:
        s.execute(
            upsert_insert(s)(TrainSpeed)
            .values(base_model=base_model, device=device, **values)
            .on_conflict_do_update(index_elements=["base_model", "device"], set_=values)
        )


def latest(db: Database, base_model: str, device: str | None = None) -> MeasuredSpeed | None:
    """The speed of ``base_model`` on ``device``; with no device (or none measured there), the
    most recently measured one on any device."""
    with db.session() as s:
        if device is not None:
            row = s.get(TrainSpeed, (base_model, device))
            if row is not None:
                return _plain(row)
        row = s.scalars(
            select(TrainSpeed)
            .where(TrainSpeed.base_model == base_model)
            .order_by(TrainSpeed.updated_at.desc(), TrainSpeed.tokens_per_second.desc())
            .limit(1)
        ).first()
        return _plain(row) if row is not None else None

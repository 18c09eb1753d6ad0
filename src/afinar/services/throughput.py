"""Measured training speed: what each job's steps showed, and what an estimate should assume.

The training child reports each step's tokens/s and its device kind (``cuda:<GPU name>`` or
``cpu:<threads>``, then the run's mode: ``/fp32``, ``/bf16+compiled``, ``/bf16+nf4``;
training/flops.py). When a job ends an epoch or its last step, the worker records the steady
speed of this run — the median of its steps after the first, which pays for warm-up and
compilation — for (base model, device kind), in ``train_speeds`` where every node reads it.
Estimates and a job's first ETA use that speed, and fall back to the catalogue's
``train_tokens_per_second`` for a base never trained here.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from afinar.store import train_speeds

if TYPE_CHECKING:
    from afinar.catalog.registry import Catalog
    from afinar.store.db import Database

log = logging.getLogger("afinar.throughput")

SpeedSource = Literal["measured", "catalogue"]


@dataclass(frozen=True)
class Speed:
    """The training speed to assume for a base model, and where it comes from."""

    tokens_per_second: float
    source: SpeedSource
    device: str | None  # the device kind it was measured on (None: the catalogue's constant)


def steady_speed(samples: Sequence[float]) -> float | None:
    """The steady tokens/s of a run's steps: the median after the first (warm-up); with a single
    step, that one; None without a positive sample."""
    usable = [x for x in samples if x > 0]
    if not usable:
        return None
    return statistics.median(usable[1:] if len(usable) > 1 else usable)


class ThroughputRecords:
    def __init__(self, *, db: Database, catalog: Catalog) -> None:
        self.db = db
        self.catalog = catalog

    def record(
        self, base_model: str, device: str, samples: Sequence[float], *, job_id: str | None = None
    ) -> float | None:
        """Record the steady speed of a run's step ``samples`` (tokens/s); the speed recorded, or
        None when there was nothing to record. Never raises: a speed is a hint, not the job."""
        speed = steady_speed(samples)
        if speed is None:
            return None
        try:
            train_speeds.save(self.db, base_model, device, speed, len(samples), job_id)
        except Exception:
            log.exception("recording the training speed of %s on %s failed", base_model, device)
            return None
        return speed

    def speed(self, base_model: str, device: str | None = None) -> Speed:
        """The speed to assume for ``base_model``: measured on ``device`` if it was, else the
        latest measured on any device, else the catalogue's constant."""
        measured = train_speeds.latest(self.db, base_model, device)
        if measured is not None and measured.tokens_per_second > 0:
            return Speed(measured.tokens_per_second, "measured", measured.device)
        entry = self.catalog.require(base_model)
        return Speed(entry.train_tokens_per_second, "catalogue", None)

"""The ``fine-tune-results`` CSV: one row per step, from the job's metrics events."""

from __future__ import annotations

import base64
import csv
import io
from typing import Any

COLUMNS = ("step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy")


def _fmt(value: Any) -> str:
    return "" if value is None else (f"{value:.6g}" if isinstance(value, float) else str(value))


def results_csv(metrics: list[dict[str, Any]], *, as_base64: bool = False) -> bytes:
    by_step: dict[int, dict[str, Any]] = {}
    for m in metrics:
        by_step[int(m["step"])] = m  # a re-run step (after a resume) replaces the earlier record
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for step in sorted(by_step):
        m = by_step[step]
        writer.writerow(
            [
                step,
                _fmt(m.get("train_loss")),
                _fmt(m.get("train_mean_token_accuracy")),
                _fmt(m.get("valid_loss")),
                _fmt(m.get("valid_mean_token_accuracy")),
            ]
        )
    data = out.getvalue().encode()
    return base64.b64encode(data) if as_base64 else data

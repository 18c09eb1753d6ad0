"""The ``fine-tune-results`` CSV: one row per step, from the job's metrics events.

The columns are OpenAI's (``step, train_loss, train_accuracy, valid_loss, valid_mean_token_accuracy``;
the validation columns are empty on steps without validation); a DPO job's file adds its own
columns after those (``PREFERENCE_COLUMNS``: loss, reward margin and preference accuracy, of training
and validation). Like OpenAI, the file is served
base64-encoded by default (``AFINAR_RESULTS_CSV_BASE64``, the cookbook decodes it with
``base64.b64decode``); ``plain_csv`` turns either form back into the CSV text for people.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
from typing import Any

from afinar.training.protocol import PREFERENCE_METRICS

COLUMNS = ("step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy")
PREFERENCE_COLUMNS = tuple(k for k in PREFERENCE_METRICS if not k.startswith("full_valid_"))
HEADER = ",".join(COLUMNS).encode()


def _fmt(value: Any) -> str:
    return "" if value is None else (f"{value:.6g}" if isinstance(value, float) else str(value))


def results_csv(metrics: list[dict[str, Any]], *, as_base64: bool = False) -> bytes:
    by_step: dict[int, dict[str, Any]] = {}
    for m in metrics:
        by_step[int(m["step"])] = m  # a re-run step (after a resume) replaces the earlier record
    extra = PREFERENCE_COLUMNS if any("dpo_loss" in m for m in by_step.values()) else ()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow((*COLUMNS, *extra))
    for step in sorted(by_step):
        m = by_step[step]
        writer.writerow(
            [
                step,
                _fmt(m.get("train_loss")),
                _fmt(m.get("train_mean_token_accuracy")),
                _fmt(m.get("valid_loss")),
                _fmt(m.get("valid_mean_token_accuracy")),
                *(_fmt(m.get(k)) for k in extra),
            ]
        )
    data = out.getvalue().encode()
    return base64.b64encode(data) if as_base64 else data


def plain_csv(data: bytes) -> bytes:
    """The CSV of a results file, whether it was stored plain or base64-encoded."""
    if data.lstrip().startswith(HEADER):
        return data
    try:
        decoded = base64.b64decode(b"".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        return data
    return decoded if decoded.startswith(HEADER) else data

"""The model card: what a fine-tuned model is, how it was made, and what checked it.

Written as ``model_card.json`` next to the adapter when the job publishes the model
(``services/publication.py``), so it travels with every export. Gates (safety, evals) add their
verdicts under ``checks``; ``training`` says where it trained (device, precision, activation
checkpointing, peak memory in bytes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from afinar.catalog.registry import Catalog
    from afinar.services.files import FilesService
    from afinar.store.tables import Job

CARD_NAME = "model_card.json"


def build_card(
    job: Job,
    *,
    files: FilesService,
    catalog: Catalog,
    created_at: int,
    trained_tokens: int,
    metrics: list[dict[str, Any]],
    checks: dict[str, Any],
    training: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The card of ``job``'s model: its base, method, data (ids, names, hashes), metrics and checks."""
    training_files = []
    for role, fid in (("training", job.training_file), ("validation", job.validation_file)):
        if fid is None:
            continue
        try:
            row = files.get(job.org_id, fid)
            training_files.append(
                {"role": role, "id": fid, "filename": row.filename, "bytes": row.bytes, "sha256": row.sha256}
            )
        except Exception:  # the file was deleted since: its id is still worth recording
            training_files.append({"role": role, "id": fid})
    entry = catalog.get(job.model)
    last = metrics[-1] if metrics else {}
    return {
        "model": job.model_name,
        "base_model": job.model,
        "base_model_source": entry.source if entry else None,
        "method": {"type": job.method.get("type", "supervised"), "adapter": "lora"},
        "hyperparameters": job.resolved_hyperparameters,
        "seed": job.seed,
        "job_id": job.id,
        "organization_id": job.org_id,
        "training_files": training_files,
        "trained_tokens": trained_tokens,
        "final_metrics": {k: v for k, v in last.items() if k != "total_steps"},
        "checks": checks,
        "training": {
            **{
                key: (training or {}).get(key)
                for key in ("device", "precision", "gradient_checkpointing", "peak_memory_bytes")
            },
            "quantization": job.quantization or "none",
            "processes": (training or {}).get("processes", 1),
            "compiled": bool((training or {}).get("compiled", False)),
        },
        "created_at": created_at,
    }


def write_card(adapter_dir: Path, card: dict[str, Any]) -> Path:
    target = Path(adapter_dir) / CARD_NAME
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(card, indent=2, sort_keys=True))
    os.replace(tmp, target)
    return target


def read_card(adapter_dir: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((Path(adapter_dir) / CARD_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data

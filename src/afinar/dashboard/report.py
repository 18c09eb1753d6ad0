"""A file's validation report against a base model, and the job estimate built on it.

Reports use the base model's own tokenizer and context length, exactly as the worker's
``validating_files`` phase does, so the numbers shown before a job are the ones training sees.
They are cached per (file, content hash, model): a file never changes once uploaded.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from afinar.datasets import hyperparameters as hp
from afinar.datasets.estimate import Estimate, estimate
from afinar.datasets.report import ValidationReport
from afinar.datasets.validation import job_failure, validate_file
from afinar.services.container import Container

MAX_CACHED = 64
_cache: OrderedDict[tuple[str, str, str], ValidationReport] = OrderedDict()
_lock = threading.Lock()


@dataclass(frozen=True)
class Checked:
    report: ValidationReport
    model: str
    failure: tuple[str, str] | None  # (code, message) the job would fail with, or None


@lru_cache(maxsize=4)
def _tokenizer(base_path: str) -> Any:
    from afinar.worker.validate import load_tokenizer

    return load_tokenizer(Path(base_path))


def check_file(c: Container, org_id: str, file_id: str, model: str, *, param: str = "training_file") -> Checked:
    """Validate a file with ``model``'s tokenizer (raises NotFound / InvalidRequest)."""
    row = c.files.get(org_id, file_id)
    entry = c.catalog.require(model)
    key = (file_id, row.sha256, model)
    with _lock:
        report = _cache.get(key)
    if report is None:
        tokenizer = _tokenizer(str(c.catalog.local_path(entry, c.settings.models_dir)))
        report = validate_file(
            c.files.local_path(org_id, file_id), tokenizer=tokenizer, context_length=entry.context_length
        )
        with _lock:
            _cache[key] = report
            while len(_cache) > MAX_CACHED:
                _cache.popitem(last=False)
    return Checked(report, model, job_failure(report, param=param, file_id=file_id))


def estimate_job(c: Container, checked: Checked, requested: dict[str, Any] | None) -> Estimate | None:
    """Tokens, steps and time for a job on this file; None when the file cannot train."""
    report = checked.report
    if checked.failure is not None or not report.n_tokenized:
        return None
    entry = c.catalog.require(checked.model)
    resolved = hp.resolve(report.n_examples, requested)  # as the worker resolves "auto"
    return estimate(report, resolved, train_tokens_per_second=entry.train_tokens_per_second)

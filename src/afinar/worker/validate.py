"""The ``validating_files`` phase: check files with the base tokenizer, resolve hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from afinar.datasets import hyperparameters as hp
from afinar.datasets.validation import job_failure as report_failure
from afinar.datasets.validation import validate_file
from afinar.worker.gates import screen_job_files

if TYPE_CHECKING:
    from afinar.services.container import Container
    from afinar.store.tables import Job


@dataclass(frozen=True)
class Validated:
    hyperparameters: dict[str, Any] | None
    error: dict[str, Any] | None
    billable_tokens_per_epoch: int = 0


def load_tokenizer(base_path: Path) -> Any:
    from afinar.catalog.ml_stack import import_ml_stack

    import_ml_stack()  # never import transformers on two threads at once (catalog/ml_stack.py)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(base_path))


def validate_job_files(c: Container, job: Job) -> Validated:
    entry = c.catalog.require(job.model)
    tokenizer = load_tokenizer(c.catalog.local_path(entry, c.settings.models_dir))
    method = job.method.get("type", "supervised")
    n_train = 0
    billable = 0
    for param, fid in (("training_file", job.training_file), ("validation_file", job.validation_file)):
        if fid is None:
            continue
        try:
            c.files.get(job.org_id, fid)
        except Exception:
            return Validated(
                None, {"code": "invalid_file", "message": f"File {fid} no longer exists.", "param": param}
            )
        with c.files.open(job.org_id, fid) as lines:  # decrypted as read, nothing written to disk
            report = validate_file(
                lines, method=method, tokenizer=tokenizer, context_length=entry.context_length
            )
        failure = report_failure(report, param=param, file_id=fid)
        if failure is not None:
            code, message = failure
            return Validated(None, {"code": code, "message": message, "param": param})
        if param == "training_file":
            n_train = report.n_examples
            billable = int(report.billable_tokens_per_epoch or 0)
    screen_error = screen_job_files(c, job)
    if screen_error is not None:
        return Validated(None, screen_error, billable)
    resolved = hp.resolve(n_train, job.requested_hyperparameters, method)
    # BILLING HOOK: a job whose estimated cost exceeds what its spend limits leave fails before training.
    spend_error = c.usage.job_spend_error(job, billable * resolved.n_epochs)
    if spend_error is not None:
        return Validated(None, spend_error, billable)
    return Validated(resolved.to_dict(), None, billable)

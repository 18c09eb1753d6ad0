"""The ``validating_files`` step of the job pipeline: check a job's files with the base model's
tokenizer, screen them, resolve the hyperparameters and check the spend limits.

The worker's short lane runs ``validate_job``; the file report and the estimate use the same
tokenizer and file validation (``tokenizer``, ``validate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from afinar.catalog.tokenizers import load_tokenizer
from afinar.datasets import hyperparameters as hp
from afinar.datasets.validation import Method, job_failure, validate_file

if TYPE_CHECKING:
    from afinar.catalog.registry import Catalog
    from afinar.config import Settings
    from afinar.datasets.report import ValidationReport
    from afinar.services.files import FilesService
    from afinar.services.screening import FileScreening
    from afinar.services.spend_limits import SpendLimits
    from afinar.store.tables import Job


@dataclass(frozen=True)
class Validated:
    """What validation decided: the resolved hyperparameters, or the job's error."""

    hyperparameters: dict[str, Any] | None
    error: dict[str, Any] | None
    billable_tokens_per_epoch: int = 0


class ValidationStep:
    def __init__(
        self,
        *,
        files: FilesService,
        catalog: Catalog,
        settings: Settings,
        screening: FileScreening,
        spend_limits: SpendLimits,
    ) -> None:
        self.files = files
        self.catalog = catalog
        self.settings = settings
        self.screening = screening
        self.spend_limits = spend_limits

    def tokenizer(self, model: str) -> tuple[Any, int]:
        """(the tokenizer, the context length) of a catalogue model (``NotFound`` when unknown)."""
        entry = self.catalog.require(model)
        return load_tokenizer(self.catalog.local_path(entry, self.settings.models_dir)), entry.context_length

    def validate(
        self, org_id: str, file_id: str, *, method: Method, tokenizer: Any, context_length: int
    ) -> ValidationReport:
        """Validate one file, decrypted as read (nothing is written to disk)."""
        with self.files.open(org_id, file_id) as lines:
            return validate_file(lines, method=method, tokenizer=tokenizer, context_length=context_length)

    def validate_job(self, job: Job) -> Validated:
        tokenizer, context_length = self.tokenizer(job.model)
        method = job.method.get("type", "supervised")
        n_train = 0
        billable = 0
        for param, fid in (("training_file", job.training_file), ("validation_file", job.validation_file)):
            if fid is None:
                continue
            try:
                self.files.get(job.org_id, fid)
            except Exception:
                return Validated(
                    None, {"code": "invalid_file", "message": f"File {fid} no longer exists.", "param": param}
                )
            report = self.validate(
                job.org_id, fid, method=method, tokenizer=tokenizer, context_length=context_length
            )
            failure = job_failure(report, param=param, file_id=fid)
            if failure is not None:
                code, message = failure
                return Validated(None, {"code": code, "message": message, "param": param})
            if param == "training_file":
                n_train = report.n_examples
                billable = int(report.billable_tokens_per_epoch or 0)
        screen_error = self.screening.screen_job_files(job)
        if screen_error is not None:
            return Validated(None, screen_error, billable)
        resolved = hp.resolve(n_train, job.requested_hyperparameters, method)
        # BILLING HOOK: a job whose estimated cost exceeds what its spend limits leave fails before training.
        spend_error = self.spend_limits.job_spend_error(job, billable * resolved.n_epochs)
        if spend_error is not None:
            return Validated(None, spend_error, billable)
        return Validated(resolved.to_dict(), None, billable)

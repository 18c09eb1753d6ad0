"""Validation reports and dry-run estimates: what a job would find and cost, before any compute.

Both run the job pipeline's own steps (``services/validation.py``, ``services/screening.py``)
in the API request; the wire objects are built in ``api/schemas/reports.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from afinar.billing.pricebook import PriceNotFound
from afinar.datasets import hyperparameters as hp
from afinar.datasets.estimate import Estimate, estimate, training_memory, weight_shapes
from afinar.datasets.validation import Method, job_failure
from afinar.training.quant import BLOCK_SIZE, NF4_BYTES_PER_PARAM
from afinar.training.spec import TrainSpec

if TYPE_CHECKING:
    from afinar.catalog.registry import Catalog
    from afinar.config import Settings
    from afinar.datasets.report import ValidationReport
    from afinar.domain.jobs import JobSpec
    from afinar.safety.screen import ScreenReport
    from afinar.services.files import FilesService
    from afinar.services.jobs import JobsService
    from afinar.services.screening import FileScreening
    from afinar.services.throughput import ThroughputRecords
    from afinar.services.usage import TrainingQuote, UsageBilling
    from afinar.services.validation import ValidationStep


@dataclass(frozen=True)
class FileReport:
    """One file's validation report with a model's tokenizer, and its data screen (None: not run)."""

    file_id: str
    model: str
    job_error: tuple[str, str] | None  # (code, message) a job on this file would fail with
    report: ValidationReport
    moderation: ScreenReport | None


@dataclass(frozen=True)
class JobEstimate:
    """A job's dry run; ``estimate``, ``hyperparameters`` (and ``cost``) only when it could be made."""

    model: str
    training_file: str
    job_error: tuple[str, str] | None
    estimate: Estimate | None = None
    hyperparameters: hp.ResolvedHyperparameters | None = None
    cost: TrainingQuote | None = None  # None: the price book does not price the model


class ReportsService:
    def __init__(
        self,
        *,
        files: FilesService,
        jobs: JobsService,
        catalog: Catalog,
        settings: Settings,
        validation: ValidationStep,
        screening: FileScreening,
        usage: UsageBilling,
        throughput: ThroughputRecords,
    ) -> None:
        self.files = files
        self.jobs = jobs
        self.catalog = catalog
        self.settings = settings
        self.validation = validation
        self.screening = screening
        self.usage = usage
        self.throughput = throughput
        self._tokenizers: dict[str, tuple[Any, int]] = {}
        self._shapes: dict[str, dict[str, tuple[int, ...]]] = {}

    def _tokenizer(self, model: str) -> tuple[Any, int]:
        if model not in self._tokenizers:
            self._tokenizers[model] = self.validation.tokenizer(model)
        return self._tokenizers[model]

    def _training_memory(self, model: str, quantization: str) -> int | None:
        """The base's training memory in ``quantization``'s mode (datasets/estimate.py), from its
        safetensors headers; None when the base has no safetensors weights."""
        entry = self.catalog.require(model)
        if model not in self._shapes:
            self._shapes[model] = weight_shapes(self.catalog.local_path(entry, self.settings.models_dir))
        shapes = self._shapes[model]
        if not shapes:
            return None
        return training_memory(
            shapes,
            entry.lora_target_modules,
            lora_r=int(TrainSpec.model_fields["lora_r"].default),
            quantized_bytes_per_param=NF4_BYTES_PER_PARAM if quantization == "nf4" else None,
            block=BLOCK_SIZE,
        )

    def file_report(
        self, org_id: str, file_id: str, *, model: str | None, method: Method, moderation: bool = True
    ) -> FileReport:
        model = model or self.settings.default_model
        self.files.get(org_id, file_id)  # an unknown id answers 404 before any tokenizer loads
        tokenizer, context = self._tokenizer(model)
        report = self.validation.validate(
            org_id, file_id, method=method, tokenizer=tokenizer, context_length=context
        )
        job_error = job_failure(report, param="training_file", file_id=file_id)
        # The data screen a job runs before training, as a pre-check (None when off or not asked).
        screen = self.screening.screen_file(org_id, file_id) if moderation else None
        screen_error = screen.error("training_file") if screen is not None else None
        if job_error is None and screen_error is not None:
            assert screen_error.code is not None  # ScreenReport.error always names one
            job_error = (screen_error.code, screen_error.message)
        return FileReport(file_id, model, job_error, report, screen)

    def estimate(self, org_id: str, spec: JobSpec) -> JobEstimate:
        """Validate the training file of a job request and estimate the job: what the job would
        find and cost. The request gets a job creation's checks first (the same 400s)."""
        req = self.jobs.check_request(org_id, spec)
        method = cast(Method, spec.method)
        tokenizer, context = self._tokenizer(req.model)
        report = self.validation.validate(
            org_id, req.training_file, method=method, tokenizer=tokenizer, context_length=context
        )
        failure = job_failure(report, param="training_file", file_id=req.training_file)
        if failure is not None or not report.has_token_counts:
            return JobEstimate(req.model, req.training_file, failure)
        hyper = hp.resolve(report.n_examples, req.requested, method)
        # The speed measured on this base by earlier jobs (any device), else the catalogue's constant.
        speed = self.throughput.speed(req.model)
        est = estimate(
            report,
            hyper,
            train_tokens_per_second=speed.tokens_per_second,
            speed_source=speed.source,
            quantization=spec.quantization,
            training_memory_bytes=self._training_memory(req.model, spec.quantization),
        )
        # What the job would cost at the base model's training price after today's free allowance.
        try:
            cost: TrainingQuote | None = self.usage.training_quote(org_id, req.model, est.billable_tokens)
        except PriceNotFound:  # the operator's price book does not price this model
            cost = None
        return JobEstimate(req.model, req.training_file, None, est, hyper, cost)

"""Validation reports and dry-run estimates: what a job would find and cost, before any compute."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from afinar.billing.pricebook import PriceNotFound
from afinar.datasets import hyperparameters as hp
from afinar.datasets.estimate import estimate
from afinar.datasets.validation import job_failure, validate_file
from afinar.errors import InvalidRequest
from afinar.worker.gates import screen_file
from afinar.worker.validate import load_tokenizer

if TYPE_CHECKING:
    from afinar.services.container import Container


class ReportsService:
    def __init__(self, c: Container) -> None:
        self.c = c
        self._tokenizers: dict[str, Any] = {}

    def _tokenizer(self, model: str) -> tuple[Any, int]:
        entry = self.c.catalog.require(model)
        if model not in self._tokenizers:
            self._tokenizers[model] = load_tokenizer(
                self.c.catalog.local_path(entry, self.c.settings.models_dir)
            )
        return self._tokenizers[model], entry.context_length

    def file_report(
        self, org_id: str, file_id: str, *, model: str | None, method: str, moderation: bool = True
    ) -> dict[str, Any]:
        if method not in ("supervised", "dpo"):
            raise InvalidRequest("method must be 'supervised' or 'dpo'", param="method")
        model = model or self.c.settings.default_model
        self.c.files.get(org_id, file_id)  # an unknown id answers 404 before any tokenizer loads
        tokenizer, context = self._tokenizer(model)
        with self.c.files.open(org_id, file_id) as lines:  # decrypted as read
            report = validate_file(lines, method=method, tokenizer=tokenizer, context_length=context)  # type: ignore[arg-type]
        failure = job_failure(report, param="training_file", file_id=file_id)
        job_error: dict[str, Any] | None = {"code": failure[0], "message": failure[1]} if failure else None
        # The data screen a job runs before training, as a pre-check (None when off or not asked).
        screen = screen_file(self.c, org_id, file_id) if moderation else None
        screen_error = screen.error("training_file") if screen is not None else None
        if job_error is None and screen_error is not None:
            job_error = {"code": screen_error.code, "message": screen_error.message}
        return {
            "object": "afinar.file_report",
            "file_id": file_id,
            "model": model,
            "job_error": job_error,
            **report.to_dict(),
            "moderation": screen.to_dict() if screen is not None else None,
        }

    def estimate(self, org_id: str, body: dict[str, Any]) -> dict[str, Any]:
        req = self.c.jobs.check_request(org_id, body)
        method = req.method.get("type", "supervised")
        tokenizer, context = self._tokenizer(req.model)
        with self.c.files.open(org_id, req.training_file) as lines:  # decrypted as read
            report = validate_file(lines, method=method, tokenizer=tokenizer, context_length=context)
        failure = job_failure(report, param="training_file", file_id=req.training_file)
        out: dict[str, Any] = {
            "object": "afinar.estimate",
            "model": req.model,
            "training_file": req.training_file,
            "job_error": {"code": failure[0], "message": failure[1]} if failure else None,
        }
        if failure is not None or not report.has_token_counts:
            return out
        hyper = hp.resolve(report.n_examples, req.requested, method)
        entry = self.c.catalog.require(req.model)
        est = estimate(report, hyper, train_tokens_per_second=entry.train_tokens_per_second)
        out.update(est.to_dict())
        out["hyperparameters"] = hyper.to_dict()
        # What the job would cost at the base model's training price after today's free allowance.
        try:
            out["cost"] = self.c.usage.training_quote(org_id, req.model, est.billable_tokens).to_dict()
        except PriceNotFound:  # the operator's price book does not price this model
            out["cost"] = None
        return out

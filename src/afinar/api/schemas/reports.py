"""The additive ``/v1/afinar/...`` reports: a file's validation report and a job's dry-run estimate
(wire shapes), the estimate's request body and the report's ``method`` query parameter."""

from __future__ import annotations

from typing import Any, cast

from afinar.api.schemas.jobs import CreateJobRequest
from afinar.datasets.validation import Method
from afinar.errors import InvalidRequest
from afinar.services.reports import FileReport, JobEstimate

REPORT_METHODS = ("supervised", "dpo")


class CreateEstimateRequest(CreateJobRequest):
    """``POST /v1/afinar/estimates``: the body of a job creation, checked the same way
    (``to_domain`` gives the ``JobSpec`` the estimate takes)."""


def report_method(method: str) -> Method:
    """The report's ``method`` query parameter, checked."""
    if method not in REPORT_METHODS:
        raise InvalidRequest("method must be 'supervised' or 'dpo'", param="method")
    return cast(Method, method)


def _job_error(failure: tuple[str, str] | None) -> dict[str, Any] | None:
    return {"code": failure[0], "message": failure[1]} if failure is not None else None


def file_report_object(r: FileReport) -> dict[str, Any]:
    """``afinar.file_report``: the validation report, the job error it implies and the data screen."""
    return {
        "object": "afinar.file_report",
        "file_id": r.file_id,
        "model": r.model,
        "job_error": _job_error(r.job_error),
        **r.report.to_dict(),
        "moderation": r.moderation.to_dict() if r.moderation is not None else None,
    }


def estimate_object(e: JobEstimate) -> dict[str, Any]:
    """``afinar.estimate``: the job error, or the estimate, resolved hyperparameters and cost."""
    out: dict[str, Any] = {
        "object": "afinar.estimate",
        "model": e.model,
        "training_file": e.training_file,
        "job_error": _job_error(e.job_error),
    }
    if e.estimate is None or e.hyperparameters is None:
        return out
    out.update(e.estimate.to_dict())
    out["hyperparameters"] = e.hyperparameters.to_dict()
    out["cost"] = e.cost.to_dict() if e.cost is not None else None
    return out

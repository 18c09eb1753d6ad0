"""Wire shapes for fine-tuning jobs, events and checkpoints (contract §2.2-2.4), and the job
creation request (``CreateJobRequest``): its fields are checked one by one, in the order clients
have always seen their errors, with OpenAI's messages and ``param``; a valid request becomes a
:class:`~afinar.domain.jobs.JobSpec` (``to_domain``). What needs the catalogue or the database (the
model exists, the files are the caller's, the eval gate's eval) is ``JobsService``'s."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from afinar.api.schemas.integrations import check_integrations
from afinar.api.schemas.lists import listing
from afinar.datasets import hyperparameters as hp
from afinar.domain.jobs import EvalGateSpec, JobSpec, JobStatus
from afinar.errors import InvalidRequest
from afinar.services import eval_checks
from afinar.store.pagination import Page
from afinar.store.tables import Checkpoint, EvalGate, Job, JobEvent
from afinar.training import quant
from afinar.training.quant import QUANTIZATIONS

HYPER_KEYS = ("batch_size", "learning_rate_multiplier", "n_epochs")
SUFFIX_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
METHOD_TYPES = ("supervised", "dpo", "reinforcement")
SUPPORTED_METHODS = ("supervised", "dpo")
MAX_SEED = 2147483647


class CreateJobRequest(BaseModel):
    """``POST /v1/fine_tuning/jobs`` (and ``POST /v1/afinar/estimates``). Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", validate_default=True)

    model: str = ""
    training_file: str = ""
    validation_file: str | None = None
    method: dict[str, Any] = {}
    # What was requested, from ``method.<type>.hyperparameters`` or the top level (deprecated form).
    hyperparameters: dict[str, Any] | None = None
    suffix: str | None = None
    seed: int | None = None
    integrations: list[Any] | None = None
    metadata: dict[str, str] | None = None
    eval_gate: dict[str, Any] | None = None
    # Afinar's own (additive): "nf4" trains LoRA on a 4-bit quantised base (QLoRA, docs/models.md).
    quantization: str | None = None

    @field_validator("model", "training_file", mode="before")
    @classmethod
    def _required(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str) or not value:
            raise InvalidRequest(f"Missing required parameter: '{info.field_name}'.", param=info.field_name)
        return value

    @field_validator("validation_file", mode="before")
    @classmethod
    def _validation_file(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise InvalidRequest(f"invalid validation_file: {value}", param="validation_file")
        return value

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value: Any) -> Any:
        method = value or {"type": "supervised"}
        if not isinstance(method, dict):
            raise InvalidRequest("method must be an object", param="method")
        mtype = method.get("type", "supervised")
        if mtype not in METHOD_TYPES:
            raise InvalidRequest(f"Invalid method type: {mtype!r}", param="method.type")
        if mtype not in SUPPORTED_METHODS:
            raise InvalidRequest(
                f"method.type '{mtype}' is not supported by this server yet; use 'supervised' or 'dpo'.",
                param="method.type",
            )
        section = method.get(mtype)
        if section is not None and not isinstance(section, dict):
            raise InvalidRequest(f"method.{mtype} must be an object", param=f"method.{mtype}")
        return {**method, "type": mtype}

    @field_validator("hyperparameters", mode="before")
    @classmethod
    def _hyperparameters(cls, top: Any, info: ValidationInfo) -> Any:
        """Either ``method.<type>.hyperparameters`` or the top-level ones, in range."""
        method = info.data["method"]  # checked above (a failed check raised)
        mtype = method["type"]
        nested = (method.get(mtype) or {}).get("hyperparameters")
        if nested is not None and top is not None:
            raise InvalidRequest(
                "Give hyperparameters either in method or at the top level, not both.",
                param="hyperparameters",
            )
        if nested is not None:
            hp.check_ranges(nested, f"method.{mtype}.hyperparameters")
            return dict(nested)
        hp.check_ranges(top, "hyperparameters")
        return dict(top or {})

    @field_validator("suffix", mode="before")
    @classmethod
    def _suffix(cls, value: Any) -> Any:
        if value is not None and (not isinstance(value, str) or not SUFFIX_RE.match(value)):
            raise InvalidRequest(
                "suffix must be 1 to 64 characters of letters, digits, '-' or '_'", param="suffix"
            )
        return value

    @field_validator("seed", mode="before")
    @classmethod
    def _seed(cls, value: Any) -> Any:
        in_range = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEED
        if value is not None and not in_range:
            raise InvalidRequest(f"seed must be an integer between 0 and {MAX_SEED}", param="seed")
        return value

    @field_validator("integrations", mode="before")
    @classmethod
    def _integrations(cls, value: Any) -> Any:
        return check_integrations(value)

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata(cls, meta: Any) -> Any:
        if meta is None:
            return None
        if not isinstance(meta, dict) or len(meta) > 16:
            raise InvalidRequest("metadata must be an object of at most 16 pairs", param="metadata")
        for k, v in meta.items():
            if not isinstance(v, str) or len(k) > 64 or len(v) > 512:
                raise InvalidRequest(
                    "metadata keys are strings of at most 64 characters, values strings of at most 512",
                    param="metadata",
                )
        return meta

    @field_validator("eval_gate", mode="before")
    @classmethod
    def _eval_gate(cls, value: Any) -> Any:
        if value is not None:
            eval_gate_spec(value)  # shape only; the service checks the eval itself
        return value

    @field_validator("quantization", mode="before")
    @classmethod
    def _quantization(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str) or value not in QUANTIZATIONS:
            allowed = ", ".join(repr(q) for q in QUANTIZATIONS)
            raise InvalidRequest(
                f"Invalid quantization: {value!r}; allowed values are {allowed}.", param="quantization"
            )
        if value != "none":
            reason = quant.unavailable_reason()
            if reason is not None:
                raise InvalidRequest(
                    f"quantization '{value}' is not available on this server: {reason}.",
                    param="quantization",
                )
        return value

    def to_domain(self) -> JobSpec:
        """The checked request, as ``JobsService.create`` (and the estimate) take it."""
        return JobSpec(
            model=self.model,
            training_file=self.training_file,
            validation_file=self.validation_file,
            method=str(self.method["type"]),
            hyperparameters=dict(self.hyperparameters or {}),
            suffix=self.suffix,
            seed=self.seed,
            metadata=dict(self.metadata) if self.metadata is not None else None,
            integrations=list(self.integrations) if self.integrations is not None else None,
            eval_gate=eval_gate_spec(self.eval_gate) if self.eval_gate is not None else None,
            quantization=self.quantization or "none",
        )


def eval_gate_spec(raw: Any) -> EvalGateSpec:
    """A job's ``eval_gate`` checked for shape (400s with ``param`` under ``eval_gate``).

    ``{"eval_id": "eval_…", "data_source": {completions data source without "model"},
    "min_pass_rate": 0.5, "beat_base_by": 0.0, "testing_criteria": "<criterion name>"?}`` — at least
    one of ``min_pass_rate`` / ``beat_base_by``.
    """
    if not isinstance(raw, dict):
        raise InvalidRequest("eval_gate must be an object.", param="eval_gate")
    eid = raw.get("eval_id")
    if not isinstance(eid, str) or not eid:
        raise InvalidRequest("Missing required parameter: 'eval_gate.eval_id'.", param="eval_gate.eval_id")
    min_rate = eval_checks.rate(raw, "min_pass_rate", 0.0)
    beat = eval_checks.rate(raw, "beat_base_by", -1.0)
    if min_rate is None and beat is None:
        raise InvalidRequest("eval_gate needs 'min_pass_rate' and/or 'beat_base_by'.", param="eval_gate")
    criterion = raw.get("testing_criteria")
    if criterion is not None and not isinstance(criterion, str):
        raise InvalidRequest(
            f"The eval has no testing criterion named {criterion!r}.", param="eval_gate.testing_criteria"
        )
    source = raw.get("data_source")
    if not isinstance(source, dict) or source.get("type") != "completions":
        raise InvalidRequest(
            "eval_gate.data_source must be a 'completions' data source (the platform fills in "
            "the base and the tuned model).",
            param="eval_gate.data_source",
        )
    try:
        ds = eval_checks.data_source({**source, "model": None}, model_required=False)
    except InvalidRequest as exc:
        exc.param = "eval_gate." + (exc.param or "data_source")
        raise
    return EvalGateSpec(eid, ds, min_pass_rate=min_rate, beat_base_by=beat, testing_criteria=criterion)


def hyperparameters(job: Job, keys: tuple[str, ...] = HYPER_KEYS) -> dict[str, Any]:
    """Each of ``keys`` as resolved once validation ran, else as requested, else ``"auto"``."""
    resolved = job.resolved_hyperparameters or {}
    requested = job.requested_hyperparameters or {}
    return {k: resolved.get(k, requested.get(k, "auto")) for k in keys}


def eval_gate_echo(gate: EvalGate | None) -> dict[str, Any] | None:
    """The job's additive ``eval_gate``: the gate as requested, its status and, once decided, its verdict."""
    if gate is None:
        return None
    return {**gate.spec, "status": gate.status, "verdict": gate.verdict}


def job_object(job: Job, eval_gate: EvalGate | None = None) -> dict[str, Any]:
    hyper = hyperparameters(job)
    mtype = job.method.get("type", "supervised")
    method_hyper = hyperparameters(job, hp.ALLOWED.get(mtype, HYPER_KEYS))
    error = job.error or {"code": None, "message": None, "param": None}
    return {
        "id": job.id,
        "object": "fine_tuning.job",
        "created_at": job.created_at,
        "model": job.model,
        "status": job.status,
        "training_file": job.training_file,
        "validation_file": job.validation_file,
        "organization_id": job.org_id,
        "result_files": list(job.result_files or []),
        "fine_tuned_model": job.fine_tuned_model,
        "finished_at": job.finished_at,
        "trained_tokens": job.trained_tokens,
        "hyperparameters": hyper,
        # DPO's section adds ``beta``; the top-level form keeps the three common keys (the SDK's type
        # requires the object, where OpenAI answers null for DPO jobs).
        "method": {"type": mtype, mtype: {"hyperparameters": method_hyper}},
        "error": error,
        "seed": job.seed,
        "estimated_finish": job.estimated_finish if job.status == JobStatus.RUNNING else None,
        "integrations": job.integrations or [],  # OpenAI answers [] when none was given
        "metadata": job.job_metadata,
        "user_provided_suffix": job.suffix,
        "usage_metrics": None,
        "shared_with_openai": False,
        "eval_gate": eval_gate_echo(eval_gate),
        "quantization": job.quantization or "none",  # additive: "nf4" for QLoRA
    }


def job_list(page: Page[Job], eval_gates: Mapping[str, EvalGate] | None = None) -> dict[str, Any]:
    gates = eval_gates or {}
    return {
        "object": "list",
        "data": [job_object(j, gates.get(j.id)) for j in page.items],
        "has_more": page.has_more,
    }


def event_object(ev: JobEvent) -> dict[str, Any]:
    return {
        "id": ev.id,
        "object": "fine_tuning.job.event",
        "created_at": ev.created_at,
        "level": ev.level,
        "message": ev.message,
        "type": ev.type,
        "data": ev.data if ev.data is not None else {},
    }


def event_list(page: Page[JobEvent]) -> dict[str, Any]:
    return {"object": "list", "data": [event_object(e) for e in page.items], "has_more": page.has_more}


def checkpoint_object(c: Checkpoint) -> dict[str, Any]:
    return {
        "id": c.id,
        "object": "fine_tuning.job.checkpoint",
        "created_at": c.created_at,
        "fine_tuned_model_checkpoint": c.model_name,
        "fine_tuning_job_id": c.job_id,
        "step_number": c.step_number,
        "metrics": c.metrics,
    }


def checkpoint_list(page: Page[Checkpoint]) -> dict[str, Any]:
    return listing(page.items, page.has_more, checkpoint_object)

"""Wire shapes of evals, eval runs and output items (the official SDK's ``openai.types.evals``),
their comparison and a job's eval gate; the request bodies of ``POST /v1/evals`` (create, update)
and ``POST /v1/evals/{id}/runs``.

Request models check what needs nothing but the request (``services/eval_checks.py``, the same
checks and 400 messages as ever) and convert into the domain objects of ``afinar.domain.evals``;
the services check what needs the database (files, models, the eval's item schema).

Additive fields: on runs ``progress`` (items done / total), ``started_at``, ``finished_at`` and, for
the runs of a fine-tuning eval gate, ``fine_tuning_job_id`` and ``gate_role``; on output items'
results, grader details (``error``, ``label``, ``predicted_sql`` …).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator

from afinar.domain.evals import DataSource, EvalUpdate, NewEval, NewRun
from afinar.evals import criteria as crit
from afinar.services import eval_checks as checks
from afinar.services.eval_compare import Comparison
from afinar.store.pagination import Page
from afinar.store.tables import Eval, EvalGate, EvalOutputItem, EvalRun

# --- requests -----------------------------------------------------------------------------------------
# Fields are validated in declaration order (the first problem is the 400); a missing field is
# validated too (``validate_default``), so it gets the same message as before.


class CreateEvalRequest(BaseModel):
    data_source_config: Any = Field(default=None, validate_default=True)
    testing_criteria: Any = Field(default=None, validate_default=True)
    name: Any = Field(default=None, validate_default=True)
    metadata: Any = Field(default=None, validate_default=True)

    @field_validator("data_source_config")
    @classmethod
    def _config(cls, v: Any) -> dict[str, Any]:
        return checks.data_source_config(v)

    @field_validator("testing_criteria")
    @classmethod
    def _criteria(cls, v: Any) -> list[dict[str, Any]]:
        return crit.check_criteria(v)

    @field_validator("name")
    @classmethod
    def _name(cls, v: Any) -> str:
        return checks.name(v, "eval")

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v: Any) -> dict[str, str] | None:
        return checks.metadata(v)

    def to_domain(self) -> NewEval:
        return NewEval(self.name, self.data_source_config, self.testing_criteria, self.metadata)


class UpdateEvalRequest(BaseModel):
    name: Any = None
    metadata: Any = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: Any) -> str | None:
        return None if v is None else checks.name(v, "")

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v: Any) -> dict[str, str] | None:
        return checks.metadata(v)

    def to_domain(self) -> EvalUpdate:
        return EvalUpdate(self.name, "metadata" in self.model_fields_set, self.metadata)


class CreateRunRequest(BaseModel):
    data_source: Any = Field(default=None, validate_default=True)
    name: Any = None
    metadata: Any = None

    @field_validator("data_source")
    @classmethod
    def _data_source(cls, v: Any) -> DataSource:
        return checks.data_source(v)

    @field_validator("name")
    @classmethod
    def _name(cls, v: Any) -> str | None:
        return checks.name(v, "") or None

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v: Any) -> dict[str, str] | None:
        return checks.metadata(v)

    def to_domain(self) -> NewRun:
        return NewRun(self.data_source, self.name, self.metadata)


# --- objects ------------------------------------------------------------------------------------------


def eval_object(ev: Eval) -> dict[str, Any]:
    config = {k: v for k, v in ev.data_source_config.items() if k != "include_sample_schema"}
    return {
        "object": "eval",
        "id": ev.id,
        "name": ev.name,
        "created_at": ev.created_at,
        "metadata": ev.eval_metadata,
        "data_source_config": config,
        "testing_criteria": ev.testing_criteria,
        "shared_with_openai": False,
    }


def run_object(run: EvalRun) -> dict[str, Any]:
    return {
        "object": "eval.run",
        "id": run.id,
        "eval_id": run.eval_id,
        "name": run.name,
        "model": run.model,
        "status": run.status,
        "created_at": run.created_at,
        "data_source": run.data_source,
        "error": run.error,
        "metadata": run.run_metadata,
        "result_counts": run.result_counts,
        "per_testing_criteria_results": run.per_testing_criteria_results,
        "per_model_usage": run.per_model_usage,
        "report_url": f"/v1/evals/{run.eval_id}/runs/{run.id}/output_items",
        "shared_with_openai": False,
        "progress": {"completed": run.completed_items, "total": len(run.items)},
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "fine_tuning_job_id": run.job_id,
        "gate_role": run.gate_role,
    }


def output_item_object(item: EvalOutputItem) -> dict[str, Any]:
    return {
        "object": "eval.run.output_item",
        "id": item.id,
        "run_id": item.run_id,
        "eval_id": item.eval_id,
        "created_at": item.created_at,
        "status": item.status,
        "datasource_item_id": item.datasource_item_id,
        "datasource_item": item.datasource_item,
        "results": item.results,
        "sample": item.sample,
    }


def page(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }


def eval_list(p: Page[Eval]) -> dict[str, Any]:
    return page([eval_object(e) for e in p.items], p.has_more)


def run_list(p: Page[EvalRun]) -> dict[str, Any]:
    return page([run_object(r) for r in p.items], p.has_more)


def output_item_list(p: Page[EvalOutputItem]) -> dict[str, Any]:
    return page([output_item_object(i) for i in p.items], p.has_more)


def run_summary(run: EvalRun) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "name": run.name,
        "model": run.model,
        "status": run.status,
        "result_counts": run.result_counts,
        "per_testing_criteria_results": run.per_testing_criteria_results,
    }


def comparison_object(cmp: Comparison, *, changed_only: bool = False) -> dict[str, Any]:
    """``eval.comparison``: the two runs' summaries, rates, changes and items (docs/evals.md)."""
    out = {
        "object": "eval.comparison",
        "eval_id": cmp.eval_id,
        "base": run_summary(cmp.base),
        "candidate": run_summary(cmp.candidate),
        **cmp.report,
    }
    if changed_only:
        out["items"] = [i for i in out["items"] if i["change"] != "same"]
    return out


def gate_object(gate: EvalGate) -> dict[str, Any]:
    """``fine_tuning.job.eval_gate``: a job's gate as requested, its status and verdict."""
    return {
        "object": "fine_tuning.job.eval_gate",
        "fine_tuning_job_id": gate.job_id,
        "eval_id": gate.eval_id,
        **{k: v for k, v in gate.spec.items() if k != "data_source"},
        "status": gate.status,
        "verdict": gate.verdict,
    }

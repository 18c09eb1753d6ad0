"""Wire shapes of evals, eval runs and output items (the official SDK's ``openai.types.evals``).

Additive fields: on runs ``progress`` (items done / total), ``started_at``, ``finished_at`` and, for
the runs of a fine-tuning eval gate, ``fine_tuning_job_id`` and ``gate_role``; on output items'
results, grader details (``error``, ``label``, ``predicted_sql`` …).
"""

from __future__ import annotations

from typing import Any

from afinar.store.pagination import Page
from afinar.store.tables import Eval, EvalOutputItem, EvalRun


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

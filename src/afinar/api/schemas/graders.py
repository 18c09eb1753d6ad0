"""Wire shapes of the fine-tuning graders (the official SDK's ``openai.types.fine_tuning.alpha``):
the bodies of ``POST /v1/fine_tuning/alpha/graders/run`` and ``…/validate`` and their answers,
``GraderRunResponse`` and ``GraderValidateResponse``. Which grader types are honoured:
``services/graders.py`` and docs/api.md.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator

from afinar.errors import InvalidRequest
from afinar.services import graders
from afinar.services.graders import GraderRun

# Fields are validated in declaration order (the first problem is the 400); a missing field is
# validated too (``validate_default``), so it gets a message naming it.


class ValidateGraderRequest(BaseModel):
    grader: Any = Field(default=None, validate_default=True)

    @field_validator("grader")
    @classmethod
    def _grader(cls, v: Any) -> dict[str, Any]:
        if v is None:
            raise InvalidRequest("Missing required parameter: 'grader'.", param="grader")
        return graders.check_grader(v)


class RunGraderRequest(ValidateGraderRequest):
    model_sample: Any = Field(default=None, validate_default=True)
    item: Any = None

    @field_validator("model_sample")
    @classmethod
    def _sample(cls, v: Any) -> str:
        if not isinstance(v, str):
            raise InvalidRequest(
                "Missing or invalid 'model_sample' (a string is required).", param="model_sample"
            )
        return v

    @field_validator("item")
    @classmethod
    def _item(cls, v: Any) -> dict[str, Any]:
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise InvalidRequest("'item' must be a JSON object (the 'item' namespace).", param="item")
        return v


def validate_object(grader: dict[str, Any]) -> dict[str, Any]:
    return {"grader": graders.public(grader)}


def run_object(run: GraderRun) -> dict[str, Any]:
    errors: dict[str, Any] = dict(run.errors)
    errors["model_grader_server_error_details"] = (
        run.error_details if run.errors["model_grader_server_error"] else None
    )
    errors["python_grader_runtime_error_details"] = None
    errors["python_grader_server_error_type"] = None
    total = sum(u["total_tokens"] for u in run.token_usage.values())
    return {
        "reward": run.reward,
        "metadata": {
            "name": run.grader["name"],
            "type": run.grader["type"],
            "errors": errors,
            "execution_time": run.execution_time,
            "scores": run.scores,
            "token_usage": total if run.token_usage else None,
            "sampled_model_name": run.sampled_model_name,
        },
        "sub_rewards": {},
        "model_grader_token_usage_per_model": run.token_usage,
    }

"""Fine-tuning graders (``POST /v1/fine_tuning/alpha/graders/run`` and ``…/validate``, the SDK's
``client.fine_tuning.alpha.graders``): the graders of the Evals API (``afinar.evals.criteria``), run
on one model sample and one item. No grading logic lives here: checking is ``check_criterion``,
grading is ``criteria.grade``.

Honoured: ``string_check``, ``text_similarity`` (``pass_threshold`` optional here: the reward is the
similarity), ``score_model`` and ``label_model`` (the judge is a model the organisation may call,
run through chat completions: metered, spend limits and moderation apply). Refused with a 400 on
``grader.type``: ``python`` (no customer code runs here), ``multi`` and ``sql_execution`` (an
eval-only criterion). A grader that cannot decide (a placeholder the item or sample lacks, a judge
that answers no score or label, a judge that fails) gives reward 0 and says why in
``metadata.errors``, as OpenAI does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from anyio import from_thread

from afinar.errors import InvalidRequest
from afinar.evals import criteria as crit
from afinar.evals import template as tpl
from afinar.services.chat import plain_request
from afinar.services.evals import check_model

if TYPE_CHECKING:
    from afinar.services.chat import ChatService
    from afinar.services.models import ModelsService
    from afinar.services.orgs import Principal

HONOURED = ("string_check", "text_similarity", "score_model", "label_model")
MODEL_GRADERS = ("score_model", "label_model")
REFUSED = {
    "python": "python graders are not supported: this server does not run customer code.",
    "multi": "multi graders are not supported yet; run each sub-grader on its own.",
    "sql_execution": "sql_execution is a testing criterion of the Evals API only (it needs an eval).",
}
ERROR_FLAGS = (
    "formula_parse_error",
    "invalid_variable_error",
    "model_grader_parse_error",
    "model_grader_refusal_error",
    "model_grader_server_error",
    "other_error",
    "python_grader_runtime_error",
    "python_grader_server_error",
    "sample_parse_error",
    "truncated_observation_error",
    "unresponsive_reward_error",
)
_PREFIX = "testing_criteria[0]"


def check_grader(raw: Any, param: str = "grader") -> dict[str, Any]:
    """The checked form of a grader (what ``validate`` echoes); a 400 naming ``param``'s field."""
    if not isinstance(raw, dict):
        raise InvalidRequest("'grader' must be an object.", param=param)
    kind = raw.get("type")
    if isinstance(kind, str) and kind in REFUSED:
        raise InvalidRequest(REFUSED[kind], param=f"{param}.type")
    if kind not in HONOURED:
        raise InvalidRequest(
            f"Unsupported grader type {kind!r}; supported: {list(HONOURED)}.", param=f"{param}.type"
        )
    body = dict(raw)
    implicit_threshold = kind == "text_similarity" and body.get("pass_threshold") is None
    if implicit_threshold:
        body["pass_threshold"] = 1.0  # only ``passed`` uses it; the reward is the similarity itself
    try:
        checked = crit.check_criterion(body, 0)
    except InvalidRequest as exc:
        if exc.param is not None and exc.param.startswith(_PREFIX):
            exc.param = param + exc.param[len(_PREFIX) :]
        raise
    if implicit_threshold:
        checked.pop("pass_threshold")
        checked["_implicit_threshold"] = True
    return checked


def public(grader: dict[str, Any]) -> dict[str, Any]:
    """The grader as the client sees it (no internal markers)."""
    return {k: v for k, v in grader.items() if not k.startswith("_")}


@dataclass
class GraderRun:
    """One grading: ``reward`` and what OpenAI's ``GraderRunResponse`` reports about it."""

    grader: dict[str, Any]
    reward: float
    execution_time: float
    scores: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(ERROR_FLAGS, False))
    error_details: str | None = None
    sampled_model_name: str | None = None
    token_usage: dict[str, dict[str, int]] = field(default_factory=dict)  # per judge model


class GradersService:
    def __init__(self, *, models: ModelsService, chat: ChatService) -> None:
        self.models = models
        self.chat = chat

    def validate(self, p: Principal, grader: dict[str, Any]) -> dict[str, Any]:
        """A checked grader whose judge model (if any) this organisation may call."""
        if grader["type"] in MODEL_GRADERS:
            check_model(self.models, p.org_id, grader["model"], "grader.model")
        return grader

    async def run(self, p: Principal, grader: dict[str, Any], model_sample: str, item: Any) -> GraderRun:
        """Grade ``model_sample`` (the ``sample`` namespace) against ``item`` with ``grader``."""
        await anyio.to_thread.run_sync(self.validate, p, grader)
        c = dict(grader)
        if c.pop("_implicit_threshold", False):
            c["pass_threshold"] = 1.0
        ctx = tpl.context(item if item is not None else {}, {"output_text": model_sample})
        out = GraderRun(grader=public(grader), reward=0.0, execution_time=0.0)
        judged: list[str] = []  # "called", then "answered": where a GradeError came from

        def judge(
            model: str, messages: list[dict[str, str]], sampling: dict[str, Any], key: str
        ) -> crit.JudgeAnswer:
            judged.append("called")
            try:
                done = from_thread.run(self.chat.complete, p, plain_request(model, messages, sampling))
            except Exception as exc:
                out.errors["model_grader_server_error"] = True
                out.error_details = getattr(exc, "message", None) or str(exc)
                raise crit.GradeError(f"the judge {model} failed: {out.error_details}") from None
            judged.append("answered")
            usage = done.usage
            out.sampled_model_name = done.model
            per = out.token_usage.setdefault(
                done.model,
                {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cached_tokens": 0},
            )
            per["prompt_tokens"] += usage.prompt_tokens
            per["completion_tokens"] += usage.completion_tokens
            per["total_tokens"] += usage.total_tokens
            return crit.JudgeAnswer(
                done.choices[0].content or "", done.model, usage.prompt_tokens, usage.completion_tokens
            )

        def grade() -> crit.Result:
            grading = crit.Grading(judge=judge, database_path=_no_database)
            try:
                return crit.grade(c, ctx, grading, key="grader")
            finally:
                grading.close()

        started = time.perf_counter()
        try:
            result = await anyio.to_thread.run_sync(grade)
        except crit.GradeError as exc:
            if not judged:
                out.errors["invalid_variable_error"] = True
            elif judged[-1] == "answered":
                out.errors["model_grader_parse_error"] = True
            out.error_details = out.error_details or str(exc)
            out.scores = {"error": str(exc)}
        else:
            out.reward = float(result.score)
            out.scores = {"score": result.score, "passed": result.passed, **result.extra}
        out.execution_time = time.perf_counter() - started
        return out


def _no_database(file_id: str) -> Any:  # sql_execution is refused by check_grader
    raise crit.GradeError("sql_execution graders are not supported here")

"""Safety gates around training: screen the data before, evaluate the tuned model after.

Both are server configuration (``AFINAR_SAFETY_*``); no job parameter can lower them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from afinar.safety.evaluation import SafetyVerdict
    from afinar.safety.screen import ScreenReport
    from afinar.services.container import Container
    from afinar.store.tables import Job


def screen_file(c: Container, org_id: str, file_id: str) -> ScreenReport | None:
    """Moderate every example of one file with the operator's thresholds; None when screening is off."""
    if not c.settings.safety_screen:
        return None
    from afinar.safety.screen import screen_lines

    with c.files.open(org_id, file_id) as lines:  # decrypted as read, nothing written to disk
        return screen_lines(
            lines,
            c.moderation,
            threshold_fraction=c.settings.moderation_screen_max_flagged_fraction,
            max_flagged_examples=c.settings.moderation_screen_max_flagged_examples,
        )


def screen_job_files(c: Container, job: Job) -> dict[str, Any] | None:
    """Moderate every example of the job's files; the job error when too many are flagged."""
    for param, fid in (("training_file", job.training_file), ("validation_file", job.validation_file)):
        report = screen_file(c, job.org_id, fid) if fid is not None else None
        error = report.error(param) if report is not None else None
        if error is not None:
            return {"code": error.code, "message": error.message, "param": param}
    return None


def evaluate_tuned_model(c: Container, job: Job, adapter_path: Path) -> SafetyVerdict | None:
    """Ask base and tuned model the safety prompt set through the serving engine; None when off."""
    if not c.settings.safety_eval:
        return None
    try:
        return run_safety_evaluation(c, job.model, job.model_name, adapter_path)
    finally:
        c.engine.unload(adapter_path)  # not servable until published


def run_safety_evaluation(
    c: Container, base_id: str, tuned_name: str, adapter_path: Path | None
) -> SafetyVerdict:
    """The operator's evaluation of one adapter (None: the base against itself) on ``base_id``.

    The base's refusal outcomes are reused from an earlier evaluation with the same base
    weights, prompts and generation settings (``safety/base_cache.py``), and stored otherwise.
    """
    from afinar.inference.types import GenerationRequest, SamplingParams
    from afinar.safety.base_cache import BaseRefusalCache, cache_key
    from afinar.safety.evaluation import KeywordRefusalClassifier, SafetyRule, evaluate_safety
    from afinar.safety.prompt_sets import load_prompt_set

    entry = c.catalog.require(base_id)
    base_path = c.catalog.local_path(entry, c.settings.models_dir)
    adapters = {base_id: None, tuned_name: adapter_path}
    params = SamplingParams(max_tokens=c.settings.safety_eval_max_new_tokens, temperature=0.0)

    def generate(model: str, messages: list[dict[str, str]]) -> str:
        request = GenerationRequest(
            base_path=base_path,
            adapter_path=adapters[model],
            messages=messages,
            params=params,
            context_length=entry.context_length,
        )
        result = c.engine.generate_sync(request)
        return str(result.choices[0].text) if result.choices else ""

    rule = SafetyRule(
        max_compliance_increase=c.settings.safety_max_compliance_increase,
        max_absolute_compliance=c.settings.safety_max_absolute_compliance,
        max_category_increase=c.settings.safety_max_category_increase,
    )
    prompts = load_prompt_set(c.settings.safety_prompt_set, c.settings.safety_eval_prompts)
    classifier = KeywordRefusalClassifier()
    cache = BaseRefusalCache(c.settings.data_dir / "cache" / "safety-base")
    key = cache_key(
        base_id=base_id,
        model_dir=base_path,
        prompts=prompts,
        max_new_tokens=c.settings.safety_eval_max_new_tokens,
        classifier=classifier,
        system_prompt=None,
    )
    return evaluate_safety(
        generate,
        base_id,
        tuned_name,
        prompts,
        classifier=classifier,
        rule=rule,
        concurrency=c.settings.max_batch_size,  # one full engine batch
        base_refused=cache.get(key, prompts),
        on_base_outcomes=lambda refused: cache.put(key, refused),
    )


def verdict_summary(verdict: SafetyVerdict) -> str:
    if verdict.passed:
        return (
            f"Safety evaluation passed: the tuned model refused as its base did "
            f"({verdict.n_forbidden} forbidden and {verdict.n_allowed} allowed prompts)."
        )
    cats = ", ".join(verdict.failed_categories) or "overall"
    return f"The fine-tuned model failed the safety evaluation ({cats}): " + "; ".join(verdict.reasons)

"""Safety gates around training: screen the data before, evaluate the tuned model after.

Both are server configuration (``AFINAR_SAFETY_*``); no job parameter can lower them.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from afinar.safety.base_cache import BaseRefusalCache
    from afinar.safety.evaluation import KeywordRefusalClassifier, Progress, SafetyPrompt, SafetyVerdict
    from afinar.safety.screen import ScreenReport
    from afinar.services.container import Container
    from afinar.store.tables import Job

log = logging.getLogger("afinar.worker")


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


def evaluate_tuned_model(
    c: Container, job: Job, adapter_path: Path, *, on_progress: Progress | None = None
) -> SafetyVerdict | None:
    """Ask base and tuned model the safety prompt set through the serving engine; None when off.

    ``on_progress(done, total)`` follows the answers (``safety.evaluation.ask_models``).
    """
    if not c.settings.safety_eval:
        return None
    try:
        return run_safety_evaluation(c, job.model, job.model_name, adapter_path, on_progress=on_progress)
    finally:
        c.engine.unload(adapter_path)  # not servable until published


def _base_cache_and_key(
    c: Container, base_id: str, base_path: Path, prompts: list[SafetyPrompt]
) -> tuple[KeywordRefusalClassifier, BaseRefusalCache, str]:
    """The refusal classifier, the base-outcome cache and the key of this base and prompt set."""
    from afinar.safety.base_cache import BaseRefusalCache, cache_key
    from afinar.safety.evaluation import KeywordRefusalClassifier

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
    return classifier, cache, key


def run_safety_evaluation(
    c: Container,
    base_id: str,
    tuned_name: str,
    adapter_path: Path | None,
    *,
    on_progress: Progress | None = None,
) -> SafetyVerdict:
    """The operator's evaluation of one adapter (None: the base against itself) on ``base_id``.

    The base's refusal outcomes are reused from an earlier evaluation with the same base
    weights, prompts and generation settings (``safety/base_cache.py``), and stored otherwise.
    The measured seconds per answer are remembered for the next job's estimate
    (``expected_safety_seconds``).
    """
    from afinar.inference.types import GenerationRequest, SamplingParams
    from afinar.safety.evaluation import SafetyRule, evaluate_safety
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
    classifier, cache, key = _base_cache_and_key(c, base_id, base_path, prompts)
    base_refused = cache.get(key, prompts)
    started = time.monotonic()
    verdict = evaluate_safety(
        generate,
        base_id,
        tuned_name,
        prompts,
        classifier=classifier,
        rule=rule,
        concurrency=c.settings.max_batch_size,  # one full engine batch
        base_refused=base_refused,
        on_base_outcomes=lambda refused: cache.put(key, refused),
        on_progress=on_progress,
    )
    answers = len(prompts) * (1 if base_refused is not None else 2)
    _record_speed(c, base_id, (time.monotonic() - started) / answers)
    return verdict


# --- how long the evaluation will take (docs/safety.md, "Progress and estimated finish") ----------

# Seconds per generated token of one answer before any evaluation on a base was measured: the
# bundled 135M model answered in 0.32 s at 48 new tokens, 16 at once, on the 2-core CPU machine.
DEFAULT_SECONDS_PER_ANSWER_TOKEN = 0.32 / 48


def _speed_file(c: Container) -> Path:
    return c.settings.data_dir / "cache" / "safety-speed.json"


def _speed_key(c: Container, base_id: str) -> str:
    s = c.settings
    return f"{base_id}|{s.safety_eval_max_new_tokens}|{s.max_batch_size}"


def _read_speeds(c: Container) -> dict[str, float]:
    try:
        data = json.loads(_speed_file(c).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, int | float) and v > 0}


def _record_speed(c: Container, base_id: str, seconds_per_answer: float) -> None:
    """Remember the measured seconds per answer on ``base_id`` (a small JSON file, written atomically)."""
    path = _speed_file(c)
    try:
        speeds = _read_speeds(c)
        speeds[_speed_key(c, base_id)] = round(seconds_per_answer, 6)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".safety-speed.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(speeds, fh, sort_keys=True)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)  # gone after the rename; a leftover after a failure
    except OSError:  # an estimate only: never fail a job over it
        log.warning("could not record the safety evaluation speed", exc_info=True)


def seconds_per_answer(c: Container, base_id: str) -> float:
    """The last measured seconds per answer on ``base_id``, else the default prior."""
    measured = _read_speeds(c).get(_speed_key(c, base_id))
    if measured is not None:
        return measured
    return DEFAULT_SECONDS_PER_ANSWER_TOKEN * c.settings.safety_eval_max_new_tokens


def safety_answers(c: Container, base_id: str) -> int:
    """Answers the evaluation of a job on ``base_id`` will generate: one per prompt from the tuned
    model, and one more per prompt from the base unless its outcomes are cached."""
    from afinar.safety.prompt_sets import load_prompt_set

    entry = c.catalog.require(base_id)
    base_path = c.catalog.local_path(entry, c.settings.models_dir)
    prompts = load_prompt_set(c.settings.safety_prompt_set, c.settings.safety_eval_prompts)
    _, cache, key = _base_cache_and_key(c, base_id, base_path, prompts)
    return len(prompts) * (1 if cache.get(key, prompts) is not None else 2)


def expected_safety_seconds(c: Container, base_id: str) -> float:
    """Seconds the post-training evaluation of a job on ``base_id`` is expected to take (0: off)."""
    if not c.settings.safety_eval:
        return 0.0
    return safety_answers(c, base_id) * seconds_per_answer(c, base_id)


def verdict_summary(verdict: SafetyVerdict) -> str:
    if verdict.passed:
        return (
            f"Safety evaluation passed: the tuned model refused as its base did "
            f"({verdict.n_forbidden} forbidden and {verdict.n_allowed} allowed prompts)."
        )
    cats = ", ".join(verdict.failed_categories) or "overall"
    return f"The fine-tuned model failed the safety evaluation ({cats}): " + "; ".join(verdict.reasons)

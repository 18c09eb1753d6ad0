"""The safety gate after training: the operator's safety evaluation of the tuned model.

A step of the job pipeline (``SafetyGate.check``): it asks base and tuned model the safety prompt
set through the serving engine, records its progress and verdict on the job (through the fenced
write it is given) and returns a :class:`~afinar.domain.gates.GateVerdict`; the job runner fails
the job when the verdict did not pass. Server configuration (``AFINAR_SAFETY_*``) decides whether
and how it runs; no job parameter can lower it. The data screen before training is
``services/screening.py``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from afinar.domain.gates import GateVerdict
from afinar.store import jobs as repo

if TYPE_CHECKING:
    from afinar.catalog.registry import Catalog
    from afinar.config import Settings
    from afinar.domain.jobs import FencedWrite
    from afinar.inference.protocol import InferenceEngine
    from afinar.safety.base_cache import BaseRefusalCache
    from afinar.safety.evaluation import KeywordRefusalClassifier, Progress, SafetyPrompt, SafetyVerdict
    from afinar.store.db import Database
    from afinar.store.tables import Job

log = logging.getLogger("afinar.worker")

GATE = "safety"  # its key in the model card's ``checks``
FAILED = "safety_eval_failed"  # the job's ``error.code`` when it fails

# Seconds per generated token of one answer before any evaluation on a base was measured: the
# bundled 135M model answered in 0.32 s at 48 new tokens, 16 at once, on the 2-core CPU machine.
DEFAULT_SECONDS_PER_ANSWER_TOKEN = 0.32 / 48


class SafetyGate:
    def __init__(
        self, *, settings: Settings, catalog: Catalog, db: Database, engine: Callable[[], InferenceEngine]
    ) -> None:
        """``engine`` gives the serving engine (created on first use) that answers the prompts."""
        self.settings = settings
        self.catalog = catalog
        self.db = db
        self.engine = engine

    # -- the pipeline step ------------------------------------------------------------------------

    def check(
        self, job: Job, adapter_path: Path, *, write: FencedWrite, expected_seconds: float = 0.0
    ) -> GateVerdict | None:
        """Evaluate the job's tuned adapter; None when the evaluation is off.

        Progress (one event per engine batch, with ``estimated_finish``: ``expected_seconds``
        before the first batch, then the evaluation's own pace) and the verdict (a
        ``moderation_checks`` event) are recorded through ``write``; the caller fails the job.
        """
        if not self.settings.safety_eval:
            return None
        started = time.monotonic()

        def on_progress(done: int, total: int) -> None:
            self._progress(write, done, total, started, expected_seconds)

        try:
            verdict = self.run_evaluation(job.model, job.model_name, adapter_path, on_progress=on_progress)
        finally:
            self.engine().unload(adapter_path)  # not servable until published
        data = verdict.to_dict()
        message = verdict_summary(verdict)
        level = "info" if verdict.passed else "error"
        write(lambda s, j: repo.add_event(s, j, message, level=level, type_="moderation_checks", data=data))
        return GateVerdict(
            gate=GATE,
            passed=verdict.passed,
            message=message,
            details=data,
            error_code=None if verdict.passed else FAILED,
        )

    def _progress(self, write: FencedWrite, done: int, total: int, started: float, expected: float) -> None:
        """One event per engine batch of answers, and ``estimated_finish`` from the evaluation's pace."""
        # Before the first batch: the estimate; then the evaluation's own pace.
        left = (time.monotonic() - started) / done * (total - done) if done > 0 else expected
        eta = int(self.db.now() + left)
        data = {"phase": "safety_evaluation", "done": done, "total": total, "estimated_finish": eta}

        def _do(s: Any, j: Job) -> None:
            j.estimated_finish = eta
            repo.add_event(s, j, f"Safety evaluation: {done}/{total} prompts answered", data=data)

        write(_do)

    # -- the evaluation ----------------------------------------------------------------------------

    def _base_cache_and_key(
        self, base_id: str, base_path: Path, prompts: list[SafetyPrompt]
    ) -> tuple[KeywordRefusalClassifier, BaseRefusalCache, str]:
        """The refusal classifier, the base-outcome cache and the key of this base and prompt set."""
        from afinar.safety.base_cache import BaseRefusalCache, cache_key
        from afinar.safety.evaluation import KeywordRefusalClassifier

        classifier = KeywordRefusalClassifier()
        cache = BaseRefusalCache(self.settings.data_dir / "cache" / "safety-base")
        key = cache_key(
            base_id=base_id,
            model_dir=base_path,
            prompts=prompts,
            max_new_tokens=self.settings.safety_eval_max_new_tokens,
            classifier=classifier,
            system_prompt=None,
        )
        return classifier, cache, key

    def run_evaluation(
        self,
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
        (``expected_seconds``). ``on_progress(done, total)`` follows the answers.
        """
        from afinar.inference.types import GenerationRequest, SamplingParams
        from afinar.safety.evaluation import SafetyRule, evaluate_safety
        from afinar.safety.prompt_sets import load_prompt_set

        settings = self.settings
        entry = self.catalog.require(base_id)
        base_path = self.catalog.local_path(entry, settings.models_dir)
        adapters = {base_id: None, tuned_name: adapter_path}
        params = SamplingParams(max_tokens=settings.safety_eval_max_new_tokens, temperature=0.0)

        def generate(model: str, messages: list[dict[str, str]]) -> str:
            request = GenerationRequest(
                base_path=base_path,
                adapter_path=adapters[model],
                messages=messages,
                params=params,
                context_length=entry.context_length,
            )
            result = self.engine().generate_sync(request)
            return str(result.choices[0].text) if result.choices else ""

        rule = SafetyRule(
            max_compliance_increase=settings.safety_max_compliance_increase,
            max_absolute_compliance=settings.safety_max_absolute_compliance,
            max_category_increase=settings.safety_max_category_increase,
        )
        prompts = load_prompt_set(settings.safety_prompt_set, settings.safety_eval_prompts)
        classifier, cache, key = self._base_cache_and_key(base_id, base_path, prompts)
        base_refused = cache.get(key, prompts)
        started = time.monotonic()
        verdict = evaluate_safety(
            generate,
            base_id,
            tuned_name,
            prompts,
            classifier=classifier,
            rule=rule,
            concurrency=settings.max_batch_size,  # one full engine batch
            base_refused=base_refused,
            on_base_outcomes=lambda refused: cache.put(key, refused),
            on_progress=on_progress,
        )
        answers = len(prompts) * (1 if base_refused is not None else 2)
        self._record_speed(base_id, (time.monotonic() - started) / answers)
        return verdict

    # -- how long the evaluation will take (docs/safety.md, "Progress and estimated finish") ---------

    def _speed_file(self) -> Path:
        return self.settings.data_dir / "cache" / "safety-speed.json"

    def _speed_key(self, base_id: str) -> str:
        s = self.settings
        return f"{base_id}|{s.safety_eval_max_new_tokens}|{s.max_batch_size}"

    def _read_speeds(self) -> dict[str, float]:
        try:
            data = json.loads(self._speed_file().read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): float(v) for k, v in data.items() if isinstance(v, int | float) and v > 0}

    def _record_speed(self, base_id: str, seconds_per_answer: float) -> None:
        """Remember the measured seconds per answer on ``base_id`` (a small JSON file, written atomically)."""
        path = self._speed_file()
        try:
            speeds = self._read_speeds()
            speeds[self._speed_key(base_id)] = round(seconds_per_answer, 6)
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

    def seconds_per_answer(self, base_id: str) -> float:
        """The last measured seconds per answer on ``base_id``, else the default prior."""
        measured = self._read_speeds().get(self._speed_key(base_id))
        if measured is not None:
            return measured
        return DEFAULT_SECONDS_PER_ANSWER_TOKEN * self.settings.safety_eval_max_new_tokens

    def answers(self, base_id: str) -> int:
        """Answers the evaluation of a job on ``base_id`` will generate: one per prompt from the tuned
        model, and one more per prompt from the base unless its outcomes are cached."""
        from afinar.safety.prompt_sets import load_prompt_set

        entry = self.catalog.require(base_id)
        base_path = self.catalog.local_path(entry, self.settings.models_dir)
        prompts = load_prompt_set(self.settings.safety_prompt_set, self.settings.safety_eval_prompts)
        _, cache, key = self._base_cache_and_key(base_id, base_path, prompts)
        return len(prompts) * (1 if cache.get(key, prompts) is not None else 2)

    def expected_seconds(self, base_id: str) -> float:
        """Seconds the post-training evaluation of a job on ``base_id`` is expected to take (0: off)."""
        if not self.settings.safety_eval:
            return 0.0
        return self.answers(base_id) * self.seconds_per_answer(base_id)


def verdict_summary(verdict: SafetyVerdict) -> str:
    if verdict.passed:
        return (
            f"Safety evaluation passed: the tuned model refused as its base did "
            f"({verdict.n_forbidden} forbidden and {verdict.n_allowed} allowed prompts)."
        )
    cats = ", ".join(verdict.failed_categories) or "overall"
    return f"The fine-tuned model failed the safety evaluation ({cats}): " + "; ".join(verdict.reasons)

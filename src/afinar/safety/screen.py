"""Screen a training file before any compute is spent (contract §5): moderate every example.

``screen_training_file(path, engine, threshold_fraction=..., max_flagged_examples=...)`` reads
the JSONL file line by line, moderates the text of each example's user and assistant turns in
batches, and reports which examples were flagged and for what.

* Numbering follows ``datasets/validation.py``: an example is named by its 1-based **line
  number**; blank lines are skipped but counted, lines that are not JSON objects are skipped
  (validation reports them).
* Chat lines: ``messages``. Preference (DPO) lines: ``input.messages`` and
  ``preferred_output``; ``non_preferred_output`` is the answer the model is taught to avoid,
  so it is screened only with ``include_rejected=True``.
* Content may be a string or a list of ``{"type": "text", "text": ...}`` parts; other parts
  are ignored here.
* An example is flagged when any of its screened turns is flagged; its categories are the union.

**Blocking rule.** With ``n`` examples of which ``k`` are flagged, the file is blocked when
``k / n > threshold_fraction`` **or** (``max_flagged_examples > 0`` and
``k > max_flagged_examples``). The fraction catches a file that is mostly harmful; the count
catches a few harmful examples hidden in a large file (ten harmful demonstrations are enough to
undo a model's safety training, Qi et al. 2023). ``threshold_fraction=0`` blocks on any flag.
The operator sets both (``AFINAR_MODERATION_SCREEN_MAX_FLAGGED_FRACTION`` / ``_EXAMPLES``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afinar.errors import DataError
from afinar.safety.categories import CATEGORIES
from afinar.safety.moderation import ModerationEngine

LISTED_LINES = 20
BLOCKED_PREFIX = (
    "The job failed due to an invalid training file. This training file was blocked because too many "
    "examples were flagged by Afinar's moderation screen for containing content that violates this "
    "server's usage policies"
)


@dataclass(frozen=True)
class ScreenReport:
    n_examples: int
    flagged_examples: list[tuple[int, list[str]]]  # (1-based line number, categories)
    categories_summary: dict[str, int]  # category → number of flagged examples
    blocked: bool
    message: str
    threshold_fraction: float = 0.0
    max_flagged_examples: int = 0
    n_texts: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_flagged(self) -> int:
        return len(self.flagged_examples)

    @property
    def flagged_fraction(self) -> float:
        return self.n_flagged / self.n_examples if self.n_examples else 0.0

    @property
    def flagged_lines(self) -> list[int]:
        return [n for n, _ in self.flagged_examples]

    def error(self, param: str = "training_file") -> DataError | None:
        """The job error to fail with (code ``invalid_training_file``), or None when not blocked."""
        if not self.blocked:
            return None
        code = "invalid_validation_file" if param == "validation_file" else "invalid_training_file"
        return DataError(self.message, param=param, code=code)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_examples": self.n_examples,
            "n_flagged": self.n_flagged,
            "flagged_fraction": round(self.flagged_fraction, 6),
            "flagged_examples": [{"line": n, "categories": cats} for n, cats in self.flagged_examples],
            "categories": self.categories_summary,
            "blocked": self.blocked,
            "threshold_fraction": self.threshold_fraction,
            "max_flagged_examples": self.max_flagged_examples,
            "message": self.message,
        }


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") in (None, "text")]
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def example_texts(obj: Any, roles: tuple[str, ...], include_rejected: bool = False) -> list[str]:
    """The texts of one example's turns in ``roles`` (chat or preference format)."""
    if not isinstance(obj, dict):
        return []
    messages: list[Any] = []
    if isinstance(obj.get("messages"), list):
        messages += obj["messages"]
    inp = obj.get("input")
    if isinstance(inp, dict) and isinstance(inp.get("messages"), list):
        messages += inp["messages"]
    keys = ["preferred_output"] + (["non_preferred_output"] if include_rejected else [])
    for key in keys:
        if isinstance(obj.get(key), list):
            messages += obj[key]
    texts = []
    for msg in messages:
        if isinstance(msg, dict) and msg.get("role") in roles:
            text = _text(msg.get("content"))
            if text.strip():
                texts.append(text)
    return texts


def _examples(
    lines: Iterable[bytes | str], roles: tuple[str, ...], include_rejected: bool
) -> Iterator[tuple[int, list[str]]]:
    for n, raw in enumerate(lines, start=1):
        line = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            yield n, []
            continue
        yield n, example_texts(obj, roles, include_rejected)


def screen_lines(
    lines: Iterable[bytes | str],
    engine: ModerationEngine,
    *,
    threshold_fraction: float,
    max_flagged_examples: int = 0,
    roles: tuple[str, ...] = ("user", "assistant"),
    include_rejected: bool = False,
    batch_size: int = 64,
) -> ScreenReport:
    """Screen JSONL given as raw lines (an open file, a blob stream)."""
    n_examples = 0
    n_texts = 0
    flagged: dict[int, set[str]] = {}
    pending: list[tuple[int, str]] = []

    def flush() -> None:
        results = engine.moderate([t for _, t in pending])
        for (n, _), result in zip(pending, results, strict=True):
            if result.flagged:
                flagged.setdefault(n, set()).update(result.flagged_categories)
        pending.clear()

    for n, texts in _examples(lines, roles, include_rejected):
        n_examples += 1
        n_texts += len(texts)
        pending.extend((n, t) for t in texts)
        if len(pending) >= batch_size:
            flush()
    if pending:
        flush()

    flagged_examples = [(n, [c for c in CATEGORIES if c in cats]) for n, cats in sorted(flagged.items())]
    summary = Counter(c for _, cats in flagged_examples for c in cats)
    categories_summary = {c: summary[c] for c in CATEGORIES if summary[c]}
    k = len(flagged_examples)
    blocked = k > 0 and (
        k / max(n_examples, 1) > threshold_fraction or (max_flagged_examples > 0 and k > max_flagged_examples)
    )
    message = _message(flagged_examples, categories_summary, n_examples, blocked)
    return ScreenReport(
        n_examples=n_examples,
        flagged_examples=flagged_examples,
        categories_summary=categories_summary,
        blocked=blocked,
        message=message,
        threshold_fraction=threshold_fraction,
        max_flagged_examples=max_flagged_examples,
        n_texts=n_texts,
    )


def screen_training_file(
    path: Path | str,
    engine: ModerationEngine,
    *,
    threshold_fraction: float,
    max_flagged_examples: int = 0,
    roles: tuple[str, ...] = ("user", "assistant"),
    include_rejected: bool = False,
    batch_size: int = 64,
) -> ScreenReport:
    """Screen a JSONL training file on disk; see the module docstring for the rules."""
    with open(path, "rb") as fh:
        return screen_lines(
            fh,
            engine,
            threshold_fraction=threshold_fraction,
            max_flagged_examples=max_flagged_examples,
            roles=roles,
            include_rejected=include_rejected,
            batch_size=batch_size,
        )


def _lines_list(lines: list[int]) -> str:
    shown = ", ".join(str(n) for n in lines[:LISTED_LINES])
    more = len(lines) - LISTED_LINES
    return shown + (f" … ({more} more)" if more > 0 else "")


def _message(flagged: list[tuple[int, list[str]]], summary: dict[str, int], n: int, blocked: bool) -> str:
    if not flagged:
        return f"No example was flagged by the moderation screen ({n} examples checked)."
    ordered = sorted(summary, key=lambda c: (-summary[c], CATEGORIES.index(c)))
    lines = _lines_list([line for line, _ in flagged])
    if blocked:
        return (
            f"{BLOCKED_PREFIX} in the following categories: {', '.join(ordered)}. "
            f"Remove the flagged examples and upload the file again. Flagged lines: {lines}"
        )
    return (
        f"{len(flagged)} of {n} examples were flagged by the moderation screen ({', '.join(ordered)}), "
        f"below the blocking threshold. Flagged lines: {lines}"
    )

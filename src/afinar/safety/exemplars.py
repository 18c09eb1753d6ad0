"""Labelled text sets in ``afinar/safety/data``: the classifier's exemplars and the held-out set.

Each JSONL line is ``{"text": str, "categories": [str, ...]}``; an empty list means benign. A
subcategory implies its parent ("hate/threatening" → "hate"), added on load. The exemplars
train the built-in backend; the held-out set (different wording, written separately) only
measures it (``bench/moderation_eval.py``) and must never be used for training.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from afinar.safety.categories import check_categories, parent

EXEMPLARS = "moderation_exemplars.jsonl"
HELDOUT = "moderation_heldout.jsonl"


@dataclass(frozen=True)
class LabelledText:
    text: str
    categories: frozenset[str]

    @property
    def harmful(self) -> bool:
        return bool(self.categories)


def data_path(name: str) -> Path:
    return Path(str(resources.files("afinar.safety").joinpath("data", name)))


def load_labelled(path: Path) -> list[LabelledText]:
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        cats = set(row.get("categories") or [])
        try:
            check_categories(cats)
        except ValueError as exc:
            raise ValueError(f"{path}:{n}: {exc}") from None
        cats |= {p for c in cats if (p := parent(c)) is not None}
        out.append(LabelledText(str(row["text"]), frozenset(cats)))
    return out


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()

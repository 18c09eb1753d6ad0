"""Moderation: OpenAI's categories and scores for a batch of texts, from a pluggable backend.

``build_moderation_engine(settings, catalog=…, engine=…)`` picks the backend the operator configured
(``AFINAR_MODERATION_BACKEND``):

* ``builtin`` (default) — offline on CPU: MiniLM embedding classifier + lexical rules +
  alt-profanity-check (``builtin.py``);
* ``guard`` — a Llama-Guard-style model from the catalogue, run by the inference engine
  (``guard.py``); needs a real guard model for real use;
* ``off`` — every score 0, nothing flagged (for operators who moderate elsewhere).

A backend only produces scores. ``ModerationEngine`` turns them into results the same way for
all backends: scores are clipped to [0, 1], a parent category scores at least as high as any of
its subcategories, and a category is flagged when its score reaches its threshold
(``moderation_threshold``, overridable per category with ``moderation_category_thresholds``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from afinar.safety.categories import CATEGORIES, OMNI_ONLY, check_categories, parent

if TYPE_CHECKING:
    from afinar.catalog.registry import Catalog
    from afinar.config import Settings
    from afinar.inference.protocol import InferenceEngine

BACKENDS = ("builtin", "guard", "off")
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class ModerationResult:
    """One text's verdict, shaped like an item of OpenAI's ``results`` array."""

    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    category_applied_input_types: dict[str, list[str]]

    @property
    def flagged_categories(self) -> list[str]:
        return [c for c in CATEGORIES if self.categories.get(c)]

    def to_dict(self, *, include_illicit: bool = True) -> dict[str, Any]:
        """The wire object. For text-only model names the ``illicit*`` keys are left out of
        ``categories`` (contract §1.7; the SDK types them optional there) but kept in
        ``category_scores`` and ``category_applied_input_types``, where the SDK requires them."""
        categories = {k: v for k, v in self.categories.items() if include_illicit or k not in OMNI_ONLY}
        return {
            "flagged": self.flagged,
            "categories": categories,
            "category_scores": dict(self.category_scores),
            "category_applied_input_types": {
                k: list(v) for k, v in self.category_applied_input_types.items()
            },
        }


class ModerationBackend(Protocol):
    name: str

    def scores(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """One ``{category: score in [0, 1]}`` per text (missing categories read as 0)."""
        ...


class OffBackend:
    name = "off"

    def scores(self, texts: Sequence[str]) -> list[dict[str, float]]:
        return [dict.fromkeys(CATEGORIES, 0.0) for _ in texts]


class ModerationEngine:
    def __init__(
        self,
        backend: ModerationBackend,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        category_thresholds: Mapping[str, float] | None = None,
    ) -> None:
        thresholds = dict(category_thresholds or {})
        check_categories(set(thresholds))
        self.backend = backend
        self.thresholds = {c: float(thresholds.get(c, threshold)) for c in CATEGORIES}

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def warm(self) -> None:
        """Load the backend's models now rather than on the first request."""
        load = getattr(self.backend, "load", None)
        if callable(load):
            load()

    def moderate(self, texts: list[str]) -> list[ModerationResult]:
        """One result per text, in order. Blank texts are not sent to the backend."""
        results: list[ModerationResult | None] = [None] * len(texts)
        todo = [i for i, t in enumerate(texts) if t.strip()]
        scored = self.backend.scores([texts[i] for i in todo]) if todo else []
        if len(scored) != len(todo):
            raise RuntimeError(
                f"moderation backend {self.backend.name!r} returned {len(scored)} "
                f"results for {len(todo)} texts"
            )
        for i, raw in zip(todo, scored, strict=True):
            results[i] = self.result(raw)
        blank = self.result({})
        return [r if r is not None else blank for r in results]

    def result(self, raw: Mapping[str, float]) -> ModerationResult:
        scores = {c: _clip(raw.get(c, 0.0)) for c in CATEGORIES}
        for c in CATEGORIES:
            p = parent(c)
            if p is not None:
                scores[p] = max(scores[p], scores[c])
        flags = {c: scores[c] >= self.thresholds[c] for c in CATEGORIES}
        return ModerationResult(
            flagged=any(flags.values()),
            categories=flags,
            category_scores=scores,
            category_applied_input_types={c: ["text"] for c in CATEGORIES},
        )


def _clip(value: float) -> float:
    v = float(value)
    if math.isnan(v):
        return 0.0
    return min(1.0, max(0.0, v))


def build_moderation_engine(
    settings: Settings,
    *,
    catalog: Catalog | None = None,
    engine: Callable[[], InferenceEngine] | None = None,
) -> ModerationEngine:
    """The engine the operator configured. The ``guard`` backend alone needs the catalogue and the
    inference engine (a provider: the engine is created on first use)."""
    kind = settings.moderation_backend.strip().lower()
    backend: ModerationBackend
    if kind == "builtin":
        from afinar.safety.builtin import shared_backend

        backend = shared_backend(
            exemplars=settings.moderation_exemplars_file,
            embedding_model=settings.moderation_embedding_model,
            cache_dir=settings.data_dir / "moderation",
        )
    elif kind == "guard":
        from afinar.safety.guard import GuardBackend

        if catalog is None or engine is None:
            raise ValueError("the 'guard' moderation backend needs the catalogue and the inference engine")
        if not settings.moderation_guard_model:
            raise ValueError(
                "AFINAR_MODERATION_GUARD_MODEL must name a catalogue model for the 'guard' backend"
            )
        backend = GuardBackend.from_catalog(
            catalog,
            settings.models_dir,
            engine(),
            settings.moderation_guard_model,
            prompt_mode=settings.moderation_guard_prompt,
        )
    elif kind == "off":
        backend = OffBackend()
    else:
        raise ValueError(
            f"unknown moderation backend {settings.moderation_backend!r}; "
            f"expected one of: {', '.join(BACKENDS)}"
        )
    return ModerationEngine(
        backend,
        threshold=settings.moderation_threshold,
        category_thresholds=settings.moderation_category_thresholds,
    )

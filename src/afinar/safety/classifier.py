"""The embedding classifier of the built-in backend: three levels of logistic regression.

Over unit-length sentence embeddings of the labelled exemplars:

1. **harmful** — every harmful exemplar against every benign one;
2. **family** — among harmful exemplars only, one-vs-rest per top-level category
   (harassment, hate, illicit, self-harm, sexual, violence);
3. **subcategory** — among the exemplars of its family only (e.g. "hate/threatening" among
   "hate" exemplars).

Scores: ``family = p(harmful) · p(family | harmful)`` and
``sub = family · p(sub | family) ** SUB_EXPONENT``. Splitting "is it harmful" from "which kind"
lets each model learn from all the data it can, and the benign exemplars (look-alikes such as
"kill the python process") only ever train level 1. Regressions are fitted with scikit-learn at
load time (milliseconds) and kept as plain weight arrays, so prediction is one matrix product.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from afinar.safety.categories import CATEGORIES, parent

FAMILIES: tuple[str, ...] = tuple(c for c in CATEGORIES if parent(c) is None)
SUB_EXPONENT = 0.5


@dataclass(frozen=True)
class _Linear:
    """A fitted binary logistic regression, or a constant when one class was absent."""

    coef: np.ndarray | None
    intercept: float
    constant: float = 0.0

    def proba(self, x: np.ndarray) -> np.ndarray:
        if self.coef is None:
            return np.full(len(x), self.constant, dtype=np.float64)
        z = x @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-z))


def _fit(x: np.ndarray, y: np.ndarray, c: float) -> _Linear:
    if y.all() or not y.any():
        return _Linear(None, 0.0, float(bool(y.all())))
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
    model.fit(x, y)
    return _Linear(model.coef_[0].astype(np.float64), float(model.intercept_[0]))


class ExemplarClassifier:
    def __init__(self, *, c_harmful: float = 4.0, c_family: float = 16.0, c_sub: float = 16.0) -> None:
        self.c_harmful = c_harmful
        self.c_family = c_family
        self.c_sub = c_sub
        self._harmful: _Linear | None = None
        self._family: dict[str, _Linear] = {}
        self._sub: dict[str, _Linear] = {}

    def fit(self, x: np.ndarray, labels: Sequence[frozenset[str]]) -> ExemplarClassifier:
        harmful = np.array([bool(lab) for lab in labels])
        self._harmful = _fit(x, harmful, self.c_harmful)
        xh = x[harmful]
        lh = [lab for lab in labels if lab]
        for fam in FAMILIES:
            self._family[fam] = _fit(xh, np.array([fam in lab for lab in lh]), self.c_family)
        for cat in CATEGORIES:
            head = parent(cat)
            if head is None:
                continue
            rows = [i for i, lab in enumerate(lh) if head in lab]
            y = np.array([cat in lh[i] for i in rows], dtype=bool)
            self._sub[cat] = _fit(xh[rows], y, self.c_sub) if rows else _Linear(None, 0.0, 0.0)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Scores in [0, 1], one column per category in ``CATEGORIES`` order."""
        if self._harmful is None:
            raise RuntimeError("ExemplarClassifier.predict before fit")
        x = np.asarray(x, dtype=np.float64)
        out = np.zeros((len(x), len(CATEGORIES)))
        p_harm = self._harmful.proba(x)
        fam_scores = {fam: p_harm * self._family[fam].proba(x) for fam in FAMILIES}
        for j, cat in enumerate(CATEGORIES):
            fam = parent(cat)
            if fam is None:
                out[:, j] = fam_scores[cat]
            else:
                out[:, j] = fam_scores[fam] * self._sub[cat].proba(x) ** SUB_EXPONENT
        return out

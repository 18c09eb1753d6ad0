"""The labelled sets and the shipped exemplar embeddings are consistent."""

from __future__ import annotations

from collections import Counter

from afinar.safety.builtin import BuiltinBackend, _read_cache
from afinar.safety.categories import CATEGORIES
from afinar.safety.exemplars import EXEMPLARS, HELDOUT, data_path, load_labelled


def test_exemplars_cover_every_category_and_many_benign_texts() -> None:
    rows = load_labelled(data_path(EXEMPLARS))
    counts = Counter(c for r in rows for c in r.categories)
    for cat in CATEGORIES:
        assert counts[cat] >= 20, cat
    assert sum(not r.harmful for r in rows) >= 150


def test_heldout_is_separate_from_the_exemplars() -> None:
    exemplars = {r.text.strip().lower() for r in load_labelled(data_path(EXEMPLARS))}
    heldout = load_labelled(data_path(HELDOUT))
    assert not exemplars & {r.text.strip().lower() for r in heldout}
    counts = Counter(c for r in heldout for c in r.categories)
    assert all(counts[c] >= 10 for c in CATEGORIES)
    assert sum(not r.harmful for r in heldout) >= 100


def test_subcategories_imply_their_parent() -> None:
    for row in load_labelled(data_path(EXEMPLARS)):
        for cat in row.categories:
            head = cat.split("/")[0]
            assert head in row.categories


def test_shipped_exemplar_embeddings_match_the_exemplar_file() -> None:
    """Edit the exemplars? Refresh the cache: ``python -m afinar.safety.builtin``."""
    backend = BuiltinBackend()
    n = len(load_labelled(backend.exemplars_path))
    cached = _read_cache(backend.exemplars_path.with_suffix(".npz"), backend._fingerprint(), n)
    assert cached is not None, "stale moderation_exemplars.npz: run python -m afinar.safety.builtin"
    assert cached.shape == (n, 384)

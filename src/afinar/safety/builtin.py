"""The built-in moderation backend: offline, CPU only, no guard LLM needed.

Three signals per text, combined into OpenAI's 13 category scores:

1. an **embedding classifier** (``classifier.py``): all-MiniLM-L6-v2 sentence embeddings of the
   text, scored by logistic regressions fitted on the labelled exemplars in
   ``data/moderation_exemplars.jsonl``. Long texts are cut into overlapping word windows and
   each category takes its highest window score, so one bad sentence in a long answer counts;
2. **lexical rules** (``lexical.py``): floors for unambiguous phrasings, damping for harmless
   idioms ("kill the process");
3. alt-profanity-check's **offensive-language model**: it raises ``harassment`` when the text
   is offensive *and* aimed at someone *and* the classifier already leans that way
   (``harassment = max(h, (h + p) / 2)`` when ``h ≥ PROFANITY_GATE``); profanity alone
   ("this skatepark is fucking great") flags nothing.

Models load once per process (``shared_backend``), lazily and under a lock. The exemplar
embeddings ship precomputed in ``data/moderation_exemplars.npz``, keyed by a fingerprint of the
exemplar file and the embedding model; when they do not match (an operator's own exemplars or
model) they are computed at load and, with a ``cache_dir``, kept there for the next start.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from afinar.inference.embedding import MiniLMEncoder, bundled_model_dir
from afinar.safety.categories import CATEGORIES
from afinar.safety.classifier import ExemplarClassifier
from afinar.safety.exemplars import EXEMPLARS, data_path, file_digest, load_labelled
from afinar.safety.lexical import apply_rules

log = logging.getLogger(__name__)

WINDOW_WORDS = 64
WINDOW_STRIDE = 48
PROFANITY_GATE = 0.2
_TARGETED = re.compile(
    r"\b(?:you|your|you're|youre|ur|u|yourself|ya)\b|\b(?:he|she|they)(?:'s|'re|\s+is|\s+are)\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"\S+")


def windows(text: str, size: int = WINDOW_WORDS, stride: int = WINDOW_STRIDE) -> list[str]:
    """The text itself when short, else overlapping windows of ``size`` words."""
    words = _WORD.findall(text)
    if len(words) <= size:
        return [text]
    out = []
    for start in range(0, len(words), stride):
        out.append(" ".join(words[start : start + size]))
        if start + size >= len(words):
            break
    return out


def model_fingerprint(model_dir: Path) -> str:
    """Identifies an embedding model directory: its config plus the size of its weights."""
    h = hashlib.sha256()
    config = model_dir / "config.json"
    if config.exists():
        h.update(config.read_bytes())
    for weights in sorted(model_dir.glob("*.safetensors")):
        h.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return h.hexdigest()


class BuiltinBackend:
    """``scores(texts)`` → one ``{category: score}`` per text. Thread-safe."""

    name = "builtin"

    def __init__(
        self,
        *,
        exemplars: Path | None = None,
        embedding_model: Path | None = None,
        cache_dir: Path | None = None,
        use_profanity: bool = True,
    ) -> None:
        self.exemplars_path = Path(exemplars) if exemplars is not None else data_path(EXEMPLARS)
        self.embedding_model = Path(embedding_model) if embedding_model is not None else None
        self.cache_dir = cache_dir
        self.use_profanity = use_profanity
        self.encoder = MiniLMEncoder(self.embedding_model)
        self._lock = threading.Lock()
        self._classifier: ExemplarClassifier | None = None
        self._profanity: Any = None

    # --- loading -----------------------------------------------------------------------

    def load(self) -> None:
        """Load the embedding model, fit the classifier, load the profanity model (once)."""
        with self._lock:
            if self._classifier is not None:
                return
            exemplars = load_labelled(self.exemplars_path)
            embeddings = self._exemplar_embeddings([e.text for e in exemplars])
            classifier = ExemplarClassifier().fit(embeddings, [e.categories for e in exemplars])
            if self.use_profanity:
                self._profanity = _load_profanity()
            self.encoder.encode(["warm up"])  # the first forward pass initialises torch's kernels
            self._classifier = classifier

    def _fingerprint(self) -> str:
        model_dir = self.embedding_model or bundled_model_dir()
        return f"{file_digest(self.exemplars_path)}:{model_fingerprint(model_dir)}"

    def _exemplar_embeddings(self, texts: list[str]) -> np.ndarray:
        fingerprint = self._fingerprint()
        candidates = [self.exemplars_path.with_suffix(".npz")]
        if self.cache_dir is not None:
            candidates.append(self.cache_dir / f"exemplars-{fingerprint[:16]}.npz")
        for path in candidates:
            cached = _read_cache(path, fingerprint, len(texts))
            if cached is not None:
                return cached
        log.info("embedding %d moderation exemplars (no matching cache)", len(texts))
        embeddings = self.encoder.encode(texts)
        if self.cache_dir is not None:
            write_cache(candidates[-1], embeddings, fingerprint)
        return embeddings

    def write_exemplar_cache(self) -> Path:
        """(Re)compute the exemplar embeddings and store them beside the exemplar file."""
        texts = [e.text for e in load_labelled(self.exemplars_path)]
        path = self.exemplars_path.with_suffix(".npz")
        write_cache(path, self.encoder.encode(texts), self._fingerprint())
        return path

    # --- scoring -----------------------------------------------------------------------

    def scores(self, texts: Sequence[str]) -> list[dict[str, float]]:
        self.load()
        assert self._classifier is not None
        pieces: list[str] = []
        owner: list[int] = []
        for i, text in enumerate(texts):
            for piece in windows(text):
                pieces.append(piece)
                owner.append(i)
        if not pieces:
            return []
        matrix = self._classifier.predict(self.encoder.encode(pieces))
        best = np.zeros((len(texts), len(CATEGORIES)))
        np.maximum.at(best, np.array(owner), matrix)
        profanity = self._profanity_scores(texts)
        out = []
        for i, text in enumerate(texts):
            row = {cat: float(best[i, j]) for j, cat in enumerate(CATEGORIES)}
            if profanity is not None:
                h = row["harassment"]
                if h >= PROFANITY_GATE and _TARGETED.search(text):
                    row["harassment"] = max(h, (h + float(profanity[i])) / 2)
            apply_rules(text, row)
            out.append(row)
        return out

    def _profanity_scores(self, texts: Sequence[str]) -> np.ndarray | None:
        if self._profanity is None:
            return None
        vectorizer, model = self._profanity
        return np.asarray(model.predict_proba(vectorizer.transform(list(texts)))[:, 1])


def _load_profanity() -> Any:
    """alt-profanity-check's vectorizer and linear model (the package loads them on import)."""
    try:
        import profanity_check.profanity_check as pc
    except ImportError:  # pragma: no cover - a declared dependency
        log.warning("alt-profanity-check is not installed; the built-in backend runs without it")
        return None
    return pc.vectorizer, pc.model


def _read_cache(path: Path, fingerprint: str, n: int) -> np.ndarray | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["fingerprint"]) != fingerprint or data["embeddings"].shape[0] != n:
                return None
            return np.asarray(data["embeddings"], dtype=np.float32)
    except (OSError, KeyError, ValueError):
        return None


def write_cache(path: Path, embeddings: np.ndarray, fingerprint: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, embeddings=embeddings.astype(np.float16), fingerprint=np.array(fingerprint))
    tmp.replace(path)


_SHARED: dict[tuple[str, str, bool], BuiltinBackend] = {}
_SHARED_LOCK = threading.Lock()


def shared_backend(
    *,
    exemplars: Path | None = None,
    embedding_model: Path | None = None,
    cache_dir: Path | None = None,
    use_profanity: bool = True,
) -> BuiltinBackend:
    """One loaded backend per configuration and process (the models are ~100 MB).

    ``cache_dir`` only says where to keep exemplar embeddings that the shipped cache does not
    cover; the first caller's directory is used.
    """
    key = (str(exemplars or ""), str(embedding_model or ""), use_profanity)
    with _SHARED_LOCK:
        backend = _SHARED.get(key)
        if backend is None:
            backend = BuiltinBackend(
                exemplars=exemplars,
                embedding_model=embedding_model,
                cache_dir=cache_dir,
                use_profanity=use_profanity,
            )
            _SHARED[key] = backend
        return backend


if __name__ == "__main__":  # python -m afinar.safety.builtin: refresh the shipped exemplar embeddings
    print(BuiltinBackend().write_exemplar_cache())

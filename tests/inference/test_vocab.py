"""Serving stops on the base model's own end-of-turn tokens: the tokenizer's EOS and every id of
``generation_config.json``'s ``eos_token_id`` (Qwen2.5 lists ``<|im_end|>`` and ``<|endoftext|>``,
Llama 3.1 ``<|end_of_text|>``, ``<|eom_id|>`` and ``<|eot_id|>``), for the base and for a tuned
adapter that carries its own tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.adapters import make_adapter
from tests.support.tiny_model import QWEN25_TEMPLATE, build_tiny_qwen2


@pytest.fixture(scope="module")
def qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen2(tmp_path_factory.mktemp("qwen2") / "model")


def test_base_and_adapter_stop_on_every_end_of_turn_id(qwen2_dir: Path, tmp_path: Path) -> None:
    from afinar.inference.loader import ModelStore

    adapter_dir = make_adapter(qwen2_dir, tmp_path / "adapter", seed=1, chat_template=QWEN25_TEMPLATE)
    store = ModelStore()
    base, adapter = store.acquire(qwen2_dir, adapter_dir)
    try:
        tok = base.vocab.tokenizer
        expected = {tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")}
        assert tok.eos_token == "<|im_end|>" and len(expected) == 2
        assert base.vocab.eos_ids == expected
        assert adapter is not None and adapter.vocab is not base.vocab  # the adapter's own tokenizer
        assert adapter.vocab.eos_ids == expected
    finally:
        store.release(adapter)

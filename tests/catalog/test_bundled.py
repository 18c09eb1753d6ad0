"""The real bundled model: GGUF → safetensors conversion, and a chat that stops at <|im_end|>."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from afinar.inference.types import GenerationRequest, SamplingParams


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from afinar.catalog.registry import Catalog

    catalog = Catalog.load()
    entry = catalog.get("smollm2-135m-instruct")
    assert entry is not None and entry.source == "bundled"
    return catalog.local_path(entry, tmp_path_factory.mktemp("models"))


@pytest.mark.slow
def test_conversion_is_done_once(smollm2_dir: Path) -> None:
    import json

    from afinar.catalog.bundled import ensure_converted
    from afinar.catalog.registry import Catalog

    assert (smollm2_dir / "model.safetensors").is_file()
    assert not list(smollm2_dir.glob("*.bin")) and not list(smollm2_dir.glob("*.gguf"))
    gen = json.loads((smollm2_dir / "generation_config.json").read_text())
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    assert gen["eos_token_id"] == tok.convert_tokens_to_ids("<|im_end|>") == tok.eos_token_id
    assert "<|im_start|>" in tok.chat_template
    entry = Catalog.load().get("smollm2-135m-instruct")
    assert entry is not None
    started = time.monotonic()
    assert ensure_converted(entry, smollm2_dir) == smollm2_dir
    assert time.monotonic() - started < 0.5


@pytest.mark.slow
def test_smollm2_answers_and_stops(smollm2_dir: Path) -> None:
    from afinar.inference.engine import HFEngine

    engine = HFEngine()
    try:
        result = engine.generate_sync(
            GenerationRequest(
                base_path=smollm2_dir,
                messages=[
                    {"role": "user", "content": "What is the capital of France? Answer in one sentence."}
                ],
                params=SamplingParams(temperature=0.0, max_tokens=40),
                context_length=2048,
            ),
            timeout=300,
        )
    finally:
        engine.close()
    choice = result.choices[0]
    assert "Paris" in choice.text
    assert choice.finish_reason == "stop"  # it ended on <|im_end|>, not on the token limit
    assert choice.completion_tokens < 40

"""Job estimates from a validation report: billable tokens, steps, time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from afinar.datasets.estimate import estimate, training_memory, weight_shapes
from afinar.datasets.hyperparameters import ResolvedHyperparameters, resolve
from afinar.datasets.report import ValidationReport
from afinar.datasets.validation import validate_file
from tests.support.tiny_model import build_tiny_model


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from transformers import AutoTokenizer

    directory = build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")
    return AutoTokenizer.from_pretrained(directory)


def report_with_tokens(**kw: Any) -> ValidationReport:
    base: dict[str, Any] = {
        "method": "supervised",
        "format": "chat",
        "n_examples": 10,
        "errors": (),
        "warnings": (),
        "n_errors_total": 0,
        "n_warnings_total": 0,
        "n_tokenized": 10,
        "total_tokens": 1200,
        "trained_tokens": 300,
        "billable_tokens_per_epoch": 1000,
    }
    return ValidationReport(**{**base, **kw})


def test_billable_tokens_are_per_epoch_tokens_times_epochs() -> None:
    hp = ResolvedHyperparameters(n_epochs=10, batch_size=4, learning_rate_multiplier=0.71)
    est = estimate(report_with_tokens(), hp, train_tokens_per_second=250.0)
    assert est.billable_tokens == 10_000
    assert (est.n_examples, est.total_tokens, est.trained_tokens) == (10, 1200, 300)
    assert (est.n_epochs, est.batch_size, est.learning_rate_multiplier) == (10, 4, 0.71)
    assert est.n_steps == 3 * 10  # ceil(10 / 4) per epoch
    assert est.estimated_seconds == pytest.approx(40.0)
    json.dumps(est.to_dict())


def test_estimate_needs_token_counts_and_a_positive_throughput() -> None:
    hp = ResolvedHyperparameters(n_epochs=1, batch_size=1, learning_rate_multiplier=1.0)
    with pytest.raises(ValueError, match="tokenizer"):
        estimate(report_with_tokens(total_tokens=None, n_tokenized=None), hp, train_tokens_per_second=1.0)
    for tps in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="train_tokens_per_second"):
            estimate(report_with_tokens(), hp, train_tokens_per_second=tps)


def test_estimate_from_a_real_file(tmp_path: Path, tokenizer: Any) -> None:
    path = tmp_path / "train.jsonl"
    long = "Clean them every month if you ride in the rain. " * 10
    lines = [
        {
            "messages": [
                {"role": "user", "content": f"q{i}"},
                {"role": "assistant", "content": long if i == 0 else "ok"},
            ]
        }
        for i in range(12)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    report = validate_file(path, tokenizer=tokenizer, context_length=40)
    assert report.ok and report.n_truncated == 1
    hp = resolve(report.n_examples, None, "supervised")
    est = estimate(report, hp, train_tokens_per_second=100.0)
    assert hp.n_epochs == 8  # 100 // 12
    assert report.billable_tokens_per_epoch is not None and report.total_tokens is not None
    assert est.billable_tokens == report.billable_tokens_per_epoch * 8
    assert est.billable_tokens < report.total_tokens * 8  # truncated tokens are not billed
    assert est.n_steps == 12 * 8
    assert est.estimated_seconds == pytest.approx(est.billable_tokens / 100.0)


def _llama_8b_shapes() -> dict[str, tuple[int, ...]]:
    """Llama-3.1-8B's tensors (hidden 4096, 32 layers, 8 KV heads of 128, MLP 14336, vocab 128256)."""
    shapes: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (128256, 4096),
        "lm_head.weight": (128256, 4096),
        "model.norm.weight": (4096,),
    }
    for i in range(32):
        p = f"model.layers.{i}."
        shapes |= {
            p + "self_attn.q_proj.weight": (4096, 4096),
            p + "self_attn.k_proj.weight": (1024, 4096),
            p + "self_attn.v_proj.weight": (1024, 4096),
            p + "self_attn.o_proj.weight": (4096, 4096),
            p + "mlp.gate_proj.weight": (14336, 4096),
            p + "mlp.up_proj.weight": (14336, 4096),
            p + "mlp.down_proj.weight": (4096, 14336),
            p + "input_layernorm.weight": (4096,),
            p + "post_attention_layernorm.weight": (4096,),
        }
    return shapes


def test_training_memory_of_an_8b_base_in_bf16_and_nf4() -> None:
    shapes = _llama_8b_shapes()
    targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    bf16 = training_memory(shapes, targets, lora_r=16, quantized_bytes_per_param=None)
    nf4 = training_memory(shapes, targets, lora_r=16, quantized_bytes_per_param=0.5 + 1 / 64)
    lora = 16 * 16 * 32 * (4 * 4096 + 2 * (4096 + 1024) + 3 * (4096 + 14336))  # 42M params, 16 bytes each
    gib = 2**30
    # 8.03B weights: 14.96 GiB in bf16; NF4 quantises the 6.98B decoder linear weights (embeddings
    # and LM head stay bf16): 5.31 GiB.
    assert (bf16 - lora) / gib == pytest.approx(14.96, abs=0.01)
    assert (nf4 - lora) / gib == pytest.approx(5.31, abs=0.01)
    assert lora == 16 * 41_943_040


def test_weight_shapes_reads_safetensors_headers(tiny_model_dir: Path, tmp_path: Path) -> None:
    shapes = weight_shapes(tiny_model_dir)
    assert shapes["model.layers.0.self_attn.k_proj.weight"] == (32, 64)
    assert shapes["model.norm.weight"] == (64,)
    assert weight_shapes(tmp_path) == {}  # no safetensors: nothing known

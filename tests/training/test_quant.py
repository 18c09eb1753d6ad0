"""QLoRA on the tiny model: the frozen decoder linears are NF4, LoRA alone trains, the loss falls, and
the saved adapter is the ordinary PEFT adapter that loads on the unquantised base."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from afinar.training import quant
from afinar.training.data import encode_file
from afinar.training.loop import run_training, train_step
from afinar.training.model import build_model, load_tokenizer
from afinar.training.spec import TrainSpec
from tests.support.data import write_jsonl
from tests.training.conftest import QA, Recorder, SpecFactory, chat, load_adapter


def test_nf4_quantises_the_decoder_linears_and_trains_only_lora(make_spec: SpecFactory) -> None:
    spec = make_spec(quantization="nf4")
    tm = build_model(spec, None)
    inner = tm.model.get_base_model()
    linears = {n: m for n, m in inner.get_decoder().named_modules() if isinstance(m, torch.nn.Linear)}
    base = {n: m for n, m in linears.items() if "lora_" not in n}
    lora = {n: m for n, m in linears.items() if "lora_" in n}
    # Every projection of every layer (the LoRA-wrapped ones and any other) is NF4; LoRA's A/B are not.
    assert len(base) == 7 * inner.config.num_hidden_layers
    assert all(quant.is_nf4(m.weight) for m in base.values())
    assert lora and not any(quant.is_nf4(m.weight) for m in lora.values())
    assert all(m.weight.dtype == torch.float32 and m.weight.requires_grad for m in lora.values())
    # Embeddings, LM head and norms are left as loaded.
    assert not quant.is_nf4(inner.get_input_embeddings().weight)
    assert not quant.is_nf4(inner.get_output_embeddings().weight)
    trainable = {n for n, p in tm.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)

    # A step moves LoRA and leaves the NF4 base as it was (its packed data bit for bit).
    tok = load_tokenizer(spec.base_model_path)
    examples = encode_file(tok, spec.train_file, spec.max_length, "train_file")
    q_proj = base["layers.0.self_attn.q_proj.base_layer"].weight
    packed = q_proj.quantized_data.clone()
    lora_a = lora["layers.0.self_attn.q_proj.lora_A.default"].weight.detach().clone()
    opt = torch.optim.AdamW(tm.params, lr=spec.learning_rate)
    for i in range(2):
        train_step(tm, opt, examples[2 * i : 2 * i + 2], 0)
    assert torch.equal(q_proj.quantized_data, packed)
    assert not torch.equal(lora["layers.0.self_attn.q_proj.lora_A.default"].weight, lora_a)


def test_nf4_weights_are_close_to_the_originals(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    q = model.get_decoder().layers[0].self_attn.q_proj
    original = q.weight.detach().clone()
    model.requires_grad_(False)
    n = quant.quantize_base(model.get_decoder(), torch.device("cpu"))
    assert n == 7 * model.config.num_hidden_layers
    restored = q.weight.get_original_weight()
    # 4 bits per value: within about a tenth of the block's absmax, never exact.
    scale = original.abs().max()
    assert 0 < float((restored - original).abs().max()) < 0.15 * float(scale)
    x = torch.randn(3, original.shape[1])
    assert torch.allclose(q(x), x @ restored.T, atol=1e-5)
    model.to(torch.device("cpu"))  # moving the model keeps the weights NF4
    assert quant.is_nf4(q.weight)


def test_qlora_run_lowers_the_loss_and_saves_a_plain_adapter(make_spec: SpecFactory, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    rows = [chat(q, "The secret code word is zanzibar.") for q, _ in QA[:4]]
    train = write_jsonl(tmp_path / "learnable.jsonl", rows)
    rec, exact = Recorder(), Recorder()
    common = {"train_file": str(train), "n_epochs": 12, "batch_size": 4}
    spec = make_spec(**common, quantization="nf4")
    final = run_training(spec, rec)
    assert final is not None
    run_training(make_spec(**common, output_dir=str(tmp_path / "exact")), exact)
    losses = rec.losses()
    assert losses[-1] < losses[0] - 0.5
    # 4-bit weights perturb the base a little: the curve follows the full-precision one closely.
    assert losses != exact.losses()
    assert losses == pytest.approx(exact.losses(), rel=0.02)
    # The adapter is LoRA's fp32 tensors only (no quantised or base weights), and it loads onto the
    # full-precision base, as serving does.
    adapter = load_adapter(final)
    assert adapter and all("lora_" in k and v.dtype == torch.float32 for k, v in adapter.items())
    base = AutoModelForCausalLM.from_pretrained(spec.base_model_path, dtype=torch.float32)
    served = PeftModel.from_pretrained(base, str(final))
    assert not any(quant.is_nf4(p) for p in served.parameters())
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        tuned = served(input_ids=ids).logits
        with served.disable_adapter():
            plain = served(input_ids=ids).logits
    assert not torch.allclose(tuned, plain)


def test_nf4_is_lora_only(make_spec: SpecFactory) -> None:
    with pytest.raises(ValueError, match="LoRA only"):
        make_spec(method="full", quantization="nf4")
    with pytest.raises(ValueError):
        make_spec(quantization="int8")
    assert make_spec().quantization == "none"


def test_without_torchao_nf4_is_unavailable_and_the_run_fails_clearly(
    make_spec: SpecFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert quant.unavailable_reason() is None
    monkeypatch.setitem(sys.modules, "torchao", None)  # makes ``import torchao`` fail, as when absent
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)
    assert quant.unavailable_reason() == "the 'torchao' package is not installed"
    spec: TrainSpec = make_spec(quantization="nf4")
    with pytest.raises(quant.QuantizationError, match="NF4 quantisation needs torchao"):
        build_model(spec, None)


def test_scaler_block_size() -> None:
    assert quant.scaler_block_size(4096 * 4096) == 256
    assert quant.scaler_block_size(64 * 64) == 64  # 64 blocks: one scale block
    assert quant.scaler_block_size(32 * 64) == 32
    assert quant.scaler_block_size(100) is None
    assert 0.51 < quant.NF4_BYTES_PER_PARAM < 0.52


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_qlora_in_bf16_follows_the_bf16_curve(make_spec: SpecFactory, tmp_path: Path) -> None:
    from afinar.training.placement import resolve_placement

    bf16, nf4 = Recorder(), Recorder()
    run_training(make_spec(output_dir=str(tmp_path / "bf16")), bf16)  # auto: CUDA in bf16
    spec = make_spec(output_dir=str(tmp_path / "nf4"), quantization="nf4")
    final = run_training(spec, nf4)
    assert nf4.events[0]["device"].startswith("cuda:") and nf4.events[0]["precision"] == "bf16"
    assert nf4.losses() == pytest.approx(bf16.losses(), rel=0.03)
    assert final is not None and {t.dtype for t in load_adapter(final).values()} == {torch.float32}
    tm = build_model(spec, None, resolve_placement("auto", "auto"))
    assert {p.device.type for p in tm.model.parameters()} == {"cuda"}
    frozen = [p for p in tm.model.parameters() if not p.requires_grad]
    assert any(quant.is_nf4(p) for p in frozen)
    assert {p.dtype for p in tm.params} == {torch.float32}

"""What is trained and how it is scored: LoRA vs base weights, label-only loss, adapter round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from afinar.datasets.encoding import IGNORE_INDEX, encode_chat
from afinar.training import checkpoint as ckpt
from afinar.training.data import collate, encode_file
from afinar.training.loop import run_training, train_step
from afinar.training.model import build_model, label_scores, load_tokenizer
from tests.support.data import write_jsonl
from tests.training.conftest import QA, Recorder, SpecFactory, chat, load_adapter


def test_lora_params_change_and_base_params_do_not(make_spec: SpecFactory) -> None:
    spec = make_spec()
    tok = load_tokenizer(spec.base_model_path)
    examples = encode_file(tok, spec.train_file, spec.max_length, "train_file")
    tm = build_model(spec, None)
    assert tm.layout == "varlen"
    named = dict(tm.model.named_parameters())
    trainable = {n for n, p in named.items() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in named.items()}
    opt = torch.optim.AdamW(tm.params, lr=spec.learning_rate)
    for i in range(3):
        train_step(tm, opt, examples[2 * i : 2 * i + 2], 0)
    for n, p in tm.model.named_parameters():
        if n in trainable:
            assert not torch.equal(before[n], p), n
        else:
            assert torch.equal(before[n], p), n


def test_label_only_head_equals_full_logits(make_spec: SpecFactory) -> None:
    spec = make_spec()
    tok = load_tokenizer(spec.base_model_path)
    examples = encode_file(tok, spec.train_file, spec.max_length, "train_file")[:3]
    tm = build_model(spec, None)
    tm.model.eval()
    loss_sum, correct, n = label_scores(tm, collate(examples, "varlen", 0))
    total, hits, count = 0.0, 0, 0
    with torch.no_grad():
        for e in examples:
            logits = tm.model(input_ids=torch.tensor([e.input_ids])).logits[0, :-1]
            gold = torch.tensor(e.labels[1:])
            keep = gold != IGNORE_INDEX
            total += float(F.cross_entropy(logits[keep], gold[keep], reduction="sum"))
            hits += int((logits[keep].argmax(-1) == gold[keep]).sum())
            count += int(keep.sum())
    assert n == count and correct == hits
    assert abs(float(loss_sum) - total) < 1e-3


def test_weight_zero_messages_carry_no_loss(make_spec: SpecFactory, tmp_path: Path) -> None:
    spec = make_spec()
    tok = load_tokenizer(spec.base_model_path)
    convo = {
        "messages": [
            {"role": "user", "content": QA[0][0]},
            {"role": "assistant", "content": QA[0][1], "weight": 0},
            {"role": "user", "content": QA[1][0]},
            {"role": "assistant", "content": QA[1][1]},
        ]
    }
    weighted = encode_chat(tok, convo, 256)
    both = encode_chat(
        tok, {"messages": [{k: v for k, v in m.items() if k != "weight"} for m in convo["messages"]]}, 256
    )
    assert weighted.input_ids == both.input_ids
    assert 0 < weighted.n_trained < both.n_trained
    tm = build_model(spec, None)
    _, _, n = label_scores(tm, collate([weighted], "varlen", 0))
    assert n == weighted.n_trained

    # A dataset whose only assistant turns have weight 0 gives no update at all.
    rows = [chat(q, a, weight=0) for q, a in QA]
    silent = write_jsonl(tmp_path / "silent.jsonl", rows)
    rec = Recorder()
    final = run_training(make_spec(train_file=str(silent), n_epochs=1), rec)
    assert final is not None
    assert all(s["train_loss"] is None for s in rec.of("step"))
    assert rec.of("step")[-1]["trained_tokens"] == rec.events[0]["tokens_per_epoch"] > 0
    adapter = load_adapter(final)
    assert all(torch.count_nonzero(t) == 0 for k, t in adapter.items() if "lora_B" in k)


def test_saved_adapter_reloads_with_same_logits(make_spec: SpecFactory, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = make_spec()
    tok = load_tokenizer(spec.base_model_path)
    examples = encode_file(tok, spec.train_file, spec.max_length, "train_file")
    tm = build_model(spec, None)
    opt = torch.optim.AdamW(tm.params, lr=spec.learning_rate)
    for i in range(3):
        train_step(tm, opt, examples[2 * i : 2 * i + 2], 0)
    out = ckpt.save_final(tmp_path / "final", tm.model, tok)

    ids = torch.tensor([examples[0].input_ids])
    tm.model.eval()
    with torch.no_grad():
        trained = tm.model(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(spec.base_model_path, dtype=torch.float32)
        base_logits = base(input_ids=ids).logits
        reloaded = PeftModel.from_pretrained(base, str(out)).eval()
        again = reloaded(input_ids=ids).logits
    assert torch.allclose(trained, again, atol=1e-5)
    assert not torch.allclose(trained, base_logits, atol=1e-4)
    served_tok = AutoTokenizer.from_pretrained(out)
    assert served_tok.chat_template == tok.chat_template
    assert served_tok.eos_token == tok.eos_token


def test_falls_back_to_padded_when_varlen_is_not_exact(
    make_spec: SpecFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import afinar.training.model as model_module

    tm = build_model(make_spec(), None)
    assert model_module.varlen_is_exact(tm.backbone, 400)
    monkeypatch.setattr(model_module, "varlen_is_exact", lambda backbone, vocab_size: False)
    tm = build_model(make_spec(), None)
    assert tm.layout == "padded"
    assert tm.model.get_base_model().config._attn_implementation == "sdpa"
    rec = Recorder()
    assert run_training(make_spec(n_epochs=1), rec) is not None

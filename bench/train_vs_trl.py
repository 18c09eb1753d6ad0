"""Afinar's training child against TRL's SFTTrainer on the same data and hyperparameters, in one run.

    .venv/bin/python bench/train_vs_trl.py                    # 2 interleaved rounds, bundled model
    .venv/bin/python bench/train_vs_trl.py --rounds 3 --epochs 2 --train examples/skateboard/train.jsonl

Three engines train the bundled SmolLM2-135M-Instruct (converted once into ``--models-dir``) on the
same chats: LoRA r=16, alpha 32, no dropout, on all seven linear projections; batch 8; AdamW at a
constant 2e-4 without weight decay; gradient clipping at 1.0; loss on the assistant tokens only; the
torch threads of the machine; each in its own process:

- ``trl``: ``SFTTrainer`` (``assistant_only_loss``, padding collator, no gradient checkpointing, fp32,
  sequential batches), timed per optimizer step by a callback;
- ``fast``: ``python -m afinar.training`` with ``precision: bf16`` and ``compile: on`` (frozen bf16
  base, fp32 LoRA branch, compiled decoder layers; ``training/fast.py``);
- ``exact``: the same child with ``precision: fp32`` and ``compile: off`` (the exact path).

The engines run interleaved, round after round, in a rotating order, so that a busy machine slows
them alike. Steady tokens/s = non-padding tokens of steps 2..N ÷ the time of those steps (step 1
carries warm-up and, for ``fast``, compilation; its seconds are printed apart). The summary gives each
engine's median steady tokens/s, the ratios to TRL, and the final training loss of ``fast`` against
``exact`` (relative difference; both see the same batches in the same order, so their curves are
comparable step by step). The load average (``os.getloadavg``) is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"
SEED = 0
LEARNING_RATE = 2e-4
LORA_R, LORA_ALPHA = 16, 32
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# The bundled model's ChatML template, rendering the same text, with the {% generation %} markers
# TRL's assistant_only_loss needs: the assistant's content and its <|im_end|> are trained, as Afinar
# trains them.
TRL_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}"
    "{% endif %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

ENGINES = {
    "fast": {"precision": "bf16", "compile": "on"},
    "exact": {"precision": "fp32", "compile": "off"},
}


def steady(tokens: list[int], seconds: list[float]) -> float | None:
    """Tokens/s over every step but the first."""
    t = sum(seconds[1:])
    return sum(tokens[1:]) / t if t > 0 else None


def run_trl(model_dir: str, train: str, epochs: int, batch_size: int, max_length: int) -> dict[str, Any]:
    """One SFTTrainer run in this process (``--trl``); the result as a dict."""
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from datasets import Dataset

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = TRL_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = [json.loads(line) for line in Path(train).read_text().splitlines() if line.strip()]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    lora = LoraConfig(
        r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0, target_modules=PROJECTIONS, task_type="CAUSAL_LM"
    )
    args = SFTConfig(
        output_dir=tempfile.mkdtemp(prefix="trl-"),
        per_device_train_batch_size=batch_size,
        num_train_epochs=epochs,
        max_length=max_length,
        assistant_only_loss=True,
        learning_rate=LEARNING_RATE,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        optim="adamw_torch",
        max_grad_norm=1.0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        train_sampling_strategy="sequential",
        dataloader_num_workers=0,
        seed=SEED,
        use_cpu=True,
        packing=False,
        padding_free=False,
        disable_tqdm=True,
    )
    seconds: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self.t = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            seconds.append(time.perf_counter() - self.t)

    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[Timer()],
    )
    dataset: Any = trainer.train_dataset  # tokenized by SFTTrainer
    lengths = [len(ids) for ids in dataset["input_ids"]]
    per_epoch = [sum(lengths[i : i + batch_size]) for i in range(0, len(lengths), batch_size)]
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    tokens = (per_epoch * epochs)[: len(seconds)]
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "engine": "trl",
        "steady_tokens_per_second": steady(tokens, seconds),
        "first_step_seconds": seconds[0],
        "tokens_per_second": sum(tokens) / wall,
        "tokens": sum(tokens),
        "losses": losses,
    }


def run_afinar(
    engine: str, model_dir: str, train: str, epochs: int, batch_size: int, max_length: int
) -> dict[str, Any]:
    """The training child (``python -m afinar.training``) with ``engine``'s precision and compile."""
    with tempfile.TemporaryDirectory(prefix=f"afinar-{engine}-") as tmp:
        spec = {
            "base_model_path": model_dir,
            "train_file": train,
            "output_dir": tmp,
            "n_epochs": epochs,
            "batch_size": batch_size,
            "learning_rate_multiplier": 1.0,
            "base_learning_rate": LEARNING_RATE,
            "seed": SEED,
            "max_length": max_length,
            "lora_r": LORA_R,
            "lora_alpha": LORA_ALPHA,
            "lora_target_modules": PROJECTIONS,
            **ENGINES[engine],
        }
        path = Path(tmp) / "spec.json"
        path.write_text(json.dumps(spec))
        t0 = time.perf_counter()
        child = subprocess.run(
            [sys.executable, "-m", "afinar.training", str(path)], capture_output=True, text=True, cwd=ROOT
        )
        wall = time.perf_counter() - t0
    events = [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
    steps = [e for e in events if e["event"] == "step"]
    if child.returncode or not steps:
        raise SystemExit(f"{engine}: the child failed (rc {child.returncode}): {child.stderr[-2000:]}")
    started = next(e for e in events if e["event"] == "started")
    done = [e["trained_tokens"] for e in steps]
    tokens = [b - a for a, b in zip([0, *done], done, strict=False)]
    seconds = [e["step_seconds"] for e in steps]
    return {
        "engine": engine,
        "steady_tokens_per_second": steady(tokens, seconds),
        "first_step_seconds": seconds[0],
        "tokens_per_second": sum(tokens) / wall,
        "tokens": sum(tokens),
        "losses": [e["train_loss"] for e in steps],
        "precision": started["precision"],
        "compiled": started.get("compiled", False),
    }


def one(engine: str, a: argparse.Namespace, model_dir: str) -> dict[str, Any]:
    """``engine`` in a fresh process, so that none inherits another's memory or threads."""
    if engine != "trl":
        return run_afinar(engine, model_dir, a.train, a.epochs, a.batch_size, a.max_length)
    cmd = [sys.executable, __file__, "--trl", "--model-dir", model_dir, "--train", a.train]
    cmd += ["--epochs", str(a.epochs), "--batch-size", str(a.batch_size), "--max-length", str(a.max_length)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode or not lines:
        raise SystemExit(f"trl failed (rc {out.returncode}): {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    return result


def bundled_model_dir(models_dir: Path) -> str:
    from afinar.catalog.registry import Catalog

    catalog = Catalog.load()
    return str(catalog.local_path(catalog.require(MODEL), models_dir))


def summary(results: list[dict[str, Any]], engines: list[str]) -> None:
    median = {
        e: statistics.median(r["steady_tokens_per_second"] for r in results if r["engine"] == e)
        for e in engines
    }
    for e in engines:
        line = (
            f"{e:>5}: {median[e]:7.1f} tokens/s steady (median of {sum(r['engine'] == e for r in results)})"
        )
        if "trl" in median and e != "trl":
            line += f", {median[e] / median['trl']:.2f}x TRL"
        print(line)
    fast = [r["losses"] for r in results if r["engine"] == "fast"]
    exact = [r["losses"] for r in results if r["engine"] == "exact"]
    if fast and exact:
        f, x = fast[-1], exact[-1]
        worst = max(abs(a - b) / abs(b) for a, b in zip(f, x, strict=True))
        print(
            f"final training loss: fast {f[-1]:.4f} vs exact fp32 {x[-1]:.4f} "
            f"(relative difference {abs(f[-1] - x[-1]) / abs(x[-1]):.2%}; largest over the steps {worst:.2%})"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", default=str(ROOT / "examples/skateboard/train.jsonl"))
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--engines", default="trl,fast,exact", help="comma-separated: trl, fast, exact")
    ap.add_argument("--models-dir", default=str(ROOT / ".afinar/models"), help="converted base models cache")
    ap.add_argument("--model-dir", help="a Hugging Face-format model directory instead of the bundled model")
    ap.add_argument("--trl", action="store_true", help=argparse.SUPPRESS)  # one TRL run in this process
    a = ap.parse_args()
    a.train = str(Path(a.train).resolve())
    if a.trl:
        print("RESULT " + json.dumps(run_trl(a.model_dir, a.train, a.epochs, a.batch_size, a.max_length)))
        return
    model_dir = a.model_dir or bundled_model_dir(Path(a.models_dir))
    engines = a.engines.split(",")
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} CPUs", flush=True)
    results = []
    for round_ in range(a.rounds):
        shift = round_ % len(engines)
        for engine in engines[shift:] + engines[:shift]:
            r = one(engine, a, model_dir)
            results.append(r)
            print(json.dumps({**r, "round": round_ + 1, "load": os.getloadavg()[0]}), flush=True)
    print(f"load average after: {os.getloadavg()}", flush=True)
    summary(results, engines)


if __name__ == "__main__":
    main()

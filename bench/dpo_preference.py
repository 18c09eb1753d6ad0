"""DPO on the bundled base model: held-out preference accuracy and margin, before and after.

A synthetic preference the base model does not have: arithmetic questions whose preferred answer
spells the number out in words ("The answer is twelve.") and whose non-preferred answer gives the
digits ("The answer is 12."). The (a, b) combinations are split into a training set and a held-out
set, so the held-out pairs ask questions (and carry answers) training never saw. The run is the one
a DPO job's training child makes (``training/loop.py``: LoRA on the catalogue's targets, the
reference being the base with the adapter switched off, the catalogue's context length), fp32 on
the CPU unless told otherwise.

    .venv/bin/python bench/dpo_preference.py          # 32 training pairs, 16 held out, 8 steps
    .venv/bin/python bench/dpo_preference.py --train-pairs 64 --epochs 2 --beta 0.2 --lr-multiplier 1
    .venv/bin/python bench/dpo_preference.py --platform http://127.0.0.1:8000/v1 --api-key sk-local-demo

With ``--platform`` the same data goes through a running Afinar as a DPO fine-tuning job (upload,
``jobs.create(method={"type": "dpo", ...})``, its worker, safety gate and publication); the tuned
model's adapter is then downloaded (``GET /v1/afinar/models/{model}/adapter``) and scored here.

Before and after training, each held-out pair is scored by the same function (``dpo.logp_margins``):
``log p(preferred) − log p(non-preferred)`` under the base model alone, then under the base with the
trained adapter. Prints one JSON line: the preference accuracy (the share of held-out pairs whose
margin is positive) and the mean margin, before and after, the last step's training DPO loss,
reward margin and accuracy, the trained tokens and the wall seconds of training.

Measured 2026-12-01 with the defaults (fp32 on a 2-core CPU shared with other work, load ≈ 11): the
held-out preference accuracy went from 0.0 to 1.0 and the mean held-out margin from −10.1 to +67.4
nats; last step DPO loss 0.0046, 3,032 trained tokens, 602 s of training. With ``--platform`` against
``afinar serve`` on the quiet machine: the same figures from a DPO job (3,032 ``trained_tokens``), 197 s
from creation to ``succeeded``, safety evaluation included.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ONES = (
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    *("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen"),
    *("sixteen", "seventeen", "eighteen", "nineteen"),
)
TENS = {20: "twenty", 30: "thirty", 40: "forty"}


def in_words(n: int) -> str:
    if n < 20:
        return ONES[n]
    tens, ones = divmod(n, 10)
    return TENS[tens * 10] + (f"-{ONES[ones]}" if ones else "")


def pair(a: int, b: int) -> dict[str, Any]:
    prompt = {"role": "user", "content": f"What is {a} plus {b}?"}
    return {
        "input": {"messages": [prompt]},
        "preferred_output": [{"role": "assistant", "content": f"The answer is {in_words(a + b)}."}],
        "non_preferred_output": [{"role": "assistant", "content": f"The answer is {a + b}."}],
    }


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def held_out_scores(spec: Any, adapter: Path | None, path: Path) -> dict[str, float]:
    from afinar.training.data import encode_preference_file
    from afinar.training.dpo import logp_margins
    from afinar.training.model import build_model, load_tokenizer, pad_token_id

    tokenizer = load_tokenizer(spec.base_model_path)
    pairs = encode_preference_file(tokenizer, path, spec.max_length, "held_out")
    margins = logp_margins(build_model(spec, adapter), pairs, spec.batch_size, pad_token_id(tokenizer))
    return {
        "accuracy": sum(m > 0 for m in margins) / len(margins),
        "mean_margin": statistics.fmean(margins),
    }


def platform_job(
    url: str, api_key: str, train: Path, args: argparse.Namespace
) -> tuple[Path, dict[str, Any]]:
    """Train through a running Afinar; returns the downloaded adapter's directory and the job's figures."""
    import io
    import zipfile

    import httpx
    import openai

    client = openai.OpenAI(base_url=url, api_key=api_key)
    file = client.files.create(file=train.open("rb"), purpose="fine-tune")
    hyper = {
        "beta": args.beta,
        "n_epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate_multiplier": args.lr_multiplier,
    }
    job = client.fine_tuning.jobs.create(
        model=args.model,
        training_file=file.id,
        seed=0,
        suffix="dpo-bench",
        method={"type": "dpo", "dpo": {"hyperparameters": hyper}},  # type: ignore[typeddict-item]
    )
    t0 = time.perf_counter()
    while job.status not in ("succeeded", "failed", "cancelled"):
        time.sleep(5)
        job = client.fine_tuning.jobs.retrieve(job.id)
    if job.status != "succeeded":
        raise SystemExit(f"{job.id} {job.status}: {job.error}")
    events = [e for e in client.fine_tuning.jobs.list_events(job.id, limit=100) if e.type == "metrics"]
    last = max(events, key=lambda e: (e.data or {}).get("step", 0)).data or {}
    archive = httpx.get(
        f"{url}/afinar/models/{job.fine_tuned_model}/adapter",
        headers={"authorization": f"Bearer {api_key}"},
        timeout=300,
    )
    archive.raise_for_status()
    out = train.parent / "adapter"
    zipfile.ZipFile(io.BytesIO(archive.content)).extractall(out)
    adapter = next(out.rglob("adapter_config.json")).parent
    figures = {
        "job": job.id,
        "fine_tuned_model": job.fine_tuned_model,
        "trained_tokens": job.trained_tokens,
        "job_seconds": round(time.perf_counter() - t0, 1),
        **{k: last.get(k) for k in ("step", "dpo_loss", "reward_margin", "preference_accuracy")},
    }
    return adapter, figures


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--train-pairs", type=int, default=32)
    ap.add_argument("--held-out-pairs", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--lr-multiplier", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=0, help="0: every core")
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--models-dir", default=str(ROOT / ".afinar/models"), help="converted base models cache")
    ap.add_argument("--platform", help="base URL of a running Afinar (…/v1): train there as a DPO job")
    ap.add_argument("--api-key", default="sk-local-demo")
    args = ap.parse_args()

    from afinar.catalog.registry import Catalog
    from afinar.training.loop import run_training
    from afinar.training.spec import TrainSpec

    combos = [(a, b) for a in range(1, 21) for b in range(1, 21)]
    random.Random(0).shuffle(combos)
    train_rows = [pair(a, b) for a, b in combos[: args.train_pairs]]
    held_rows = [pair(a, b) for a, b in combos[args.train_pairs : args.train_pairs + args.held_out_pairs]]

    catalog = Catalog.load()
    entry = catalog.require(args.model)
    base = catalog.local_path(entry, Path(args.models_dir))
    with tempfile.TemporaryDirectory() as tmp:
        spec = TrainSpec(
            base_model_path=str(base),
            train_file=str(write(Path(tmp) / "train.jsonl", train_rows)),
            output_dir=str(Path(tmp) / "out"),
            objective="dpo",
            beta=args.beta,
            n_epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate_multiplier=args.lr_multiplier,
            seed=0,
            max_length=entry.context_length,
            lora_target_modules=list(entry.lora_target_modules),
            threads=args.threads,
            device=args.device,
        )
        held = write(Path(tmp) / "held_out.jsonl", held_rows)
        before = held_out_scores(spec, None, held)
        if args.platform:
            adapter, figures = platform_job(args.platform, args.api_key, Path(spec.train_file), args)
            after = held_out_scores(spec, adapter, held)
            print(
                json.dumps(
                    {
                        "model": args.model,
                        "train_pairs": len(train_rows),
                        "held_out_pairs": len(held_rows),
                        "held_out_accuracy_before": before["accuracy"],
                        "held_out_accuracy_after": after["accuracy"],
                        "held_out_mean_margin_before": round(before["mean_margin"], 4),
                        "held_out_mean_margin_after": round(after["mean_margin"], 4),
                        **figures,
                    }
                )
            )
            return
        events: list[dict[str, Any]] = []

        def emit(event: dict[str, Any]) -> None:
            events.append(event)
            if event["event"] == "step":  # progress on stderr; stdout gets the one JSON line
                print(
                    f"step {event['step']}/{event['total_steps']} dpo_loss={event['dpo_loss']:.4f}",
                    file=sys.stderr,
                )

        t0 = time.perf_counter()
        final = run_training(spec, emit)
        seconds = time.perf_counter() - t0
        assert final is not None
        after = held_out_scores(spec, final, held)
    last = [e for e in events if e["event"] == "step"][-1]
    done = next(e for e in events if e["event"] == "done")
    print(
        json.dumps(
            {
                "model": args.model,
                "train_pairs": len(train_rows),
                "held_out_pairs": len(held_rows),
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "beta": args.beta,
                "lr_multiplier": args.lr_multiplier,
                "steps": last["step"],
                "held_out_accuracy_before": before["accuracy"],
                "held_out_accuracy_after": after["accuracy"],
                "held_out_mean_margin_before": round(before["mean_margin"], 4),
                "held_out_mean_margin_after": round(after["mean_margin"], 4),
                "last_step_dpo_loss": round(last["dpo_loss"], 4),
                "last_step_reward_margin": round(last["reward_margin"], 4),
                "last_step_preference_accuracy": last["preference_accuracy"],
                "trained_tokens": done["trained_tokens"],
                "training_seconds": round(seconds, 1),
                "device": next(e for e in events if e["event"] == "started")["device"],
            }
        )
    )


if __name__ == "__main__":
    main()

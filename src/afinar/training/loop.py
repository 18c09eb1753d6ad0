"""The training loop: AdamW with a constant learning rate, grad-clip 1.0, loss on labels only.

The device and precision come from the spec (``placement.py``): fp32 on the CPU by default, bf16
autocast with fp32 LoRA and optimizer state on a GPU.

Determinism: the LoRA init is seeded from ``seed``; the order of epoch e comes from (seed, e); and
before every optimizer step the torch generator is re-seeded from (seed, step), so dropout noise
depends on the step alone. A run resumed from a checkpoint at step S therefore replays steps S+1..N
exactly as an uninterrupted run would, with the same weights, optimizer state, batches and noise.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from afinar.datasets.encoding import EncodedExample
from afinar.training import checkpoint as ckpt
from afinar.training.data import (
    collate,
    derive_seed,
    encode_file,
    encode_preference_file,
    epoch_batches,
    epoch_order,
    steps_per_epoch,
)
from afinar.training.distributed import SINGLE, Group, pause_requested
from afinar.training.dpo import dpo_evaluate, dpo_step, dpo_step_parallel, sequence_lengths, with_reference
from afinar.training.fast import apply_compile, wants_cpu_bf16
from afinar.training.flops import StepMeter
from afinar.training.model import TrainModel, build_model, label_scores, load_tokenizer, pad_token_id
from afinar.training.placement import Placement, resolve_placement
from afinar.training.protocol import Emit, metrics_record
from afinar.training.sharding import (
    full_model_state,
    full_optimizer_state,
    local_parameters,
    shard_model,
    shard_optimizer_state,
    strategy,
)
from afinar.training.spec import TrainSpec

GRAD_CLIP = 1.0
AUTO_EVALUATIONS = 10
RNG_SCHEME = (
    "torch seed before step s = derive_seed(seed, 'step', s); "
    "order of epoch e = derive_seed(seed, 'shuffle', e)"
)


class TrainingError(RuntimeError):
    """Training cannot go on (diverged, or a checkpoint that does not fit the spec)."""


@dataclass
class Scores:
    loss: float | None
    accuracy: float | None


@dataclass
class RunState:
    step: int = 0
    trained_tokens: int = 0
    metrics: dict[str, Any] = field(default_factory=lambda: metrics_record(0, None, None, None, None))
    saved_step: int = -1  # the step of the last checkpoint written by this process


def epoch_of(step: int, per_epoch: int) -> int:
    """1-based epoch that optimizer step ``step`` (1-based) belongs to."""
    return (step - 1) // per_epoch + 1 if step > 0 else 0


def eval_interval(spec: TrainSpec, total_steps: int) -> int:
    return spec.eval_every_steps or max(1, math.ceil(total_steps / AUTO_EVALUATIONS))


def _eval_sums(
    tm: TrainModel,
    examples: list[EncodedExample],
    batch_size: int,
    pad_id: int,
    rounds: int = 0,
    filler: list[EncodedExample] | None = None,
) -> tuple[float, int, int]:
    """Summed scores of ``examples``; then forward passes on ``filler`` (scores dropped) up to ``rounds``
    in all: with FSDP every rank runs as many as the others (each one all-gathers the weights)."""
    tm.model.eval()
    loss_sum, correct, labels = 0.0, 0, 0
    starts = range(0, len(examples), batch_size)
    with torch.no_grad():
        for i in starts:
            batch = collate(examples[i : i + batch_size], tm.layout, pad_id)
            s, c, n = label_scores(tm, batch)
            loss_sum, correct, labels = loss_sum + float(s.item()), correct + c, labels + n
        for _ in range(rounds - len(starts)):
            label_scores(tm, collate(filler or [], tm.layout, pad_id))
    tm.model.train()
    return loss_sum, correct, labels


def evaluate(
    tm: TrainModel, examples: list[EncodedExample], batch_size: int, pad_id: int, group: Group = SINGLE
) -> Scores:
    """Token-weighted loss and accuracy over every label of ``examples``, in file order (with
    several ranks: each scores its share and the sums are added)."""
    if group.world == 1:
        loss_sum, correct, labels = _eval_sums(tm, examples, batch_size, pad_id)
    else:
        rounds = math.ceil(math.ceil(len(examples) / group.world) / batch_size) if tm.sharded else 0
        mine = _eval_sums(tm, group.shard(examples), batch_size, pad_id, rounds, examples[:1])
        sums = group.sum(mine, tm.placement.device)
        loss_sum, correct, labels = sums[0], int(sums[1]), int(sums[2])
    if labels == 0:
        return Scores(None, None)
    return Scores(loss_sum / labels, correct / labels)


def train_step(
    tm: TrainModel, optimizer: torch.optim.Optimizer, batch_examples: list[EncodedExample], pad_id: int
) -> Scores:
    batch = collate(batch_examples, tm.layout, pad_id)
    loss_sum, correct, n_labels = label_scores(tm, batch)
    if n_labels == 0:  # nothing to learn from this batch: no update at all
        return Scores(None, None)
    loss = loss_sum / n_labels
    value = float(loss.item())
    if not math.isfinite(value):
        raise TrainingError(f"training diverged: the loss is {value}")
    loss.backward()
    torch.nn.utils.clip_grad_norm_(tm.params, GRAD_CLIP)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return Scores(value, correct / n_labels)


def train_step_parallel(
    tm: TrainModel,
    optimizer: torch.optim.Optimizer,
    batch_examples: list[EncodedExample],
    pad_id: int,
    group: Group,
) -> Scores:
    """``train_step`` over several ranks: this rank's share of the global batch, the global mean loss
    (all-reduced sums), gradients summed over the ranks, then the same clip and update everywhere.

    Sharded (FSDP, ``sharding.py``): every rank runs a forward and backward pass, with a filler
    example at zero weight when it has none of the batch; FSDP reduce-scatters the gradients as a
    mean over the ranks, so the loss is scaled by the world size to make that mean the sum."""
    mine = group.shard(batch_examples)
    filler = tm.sharded and not mine
    if filler:
        mine = batch_examples[:1]
    loss_sum: torch.Tensor | None = None
    correct = n_labels = 0
    if mine:
        loss_sum, correct, n_labels = label_scores(tm, collate(mine, tm.layout, pad_id))
    if filler:
        correct = n_labels = 0
    local = float(loss_sum.item()) if loss_sum is not None and n_labels else 0.0
    total_loss, total_correct, total_labels = group.sum([local, correct, n_labels], tm.placement.device)
    if total_labels == 0:  # nothing to learn from this batch on any rank: no update at all
        return Scores(None, None)
    value = total_loss / total_labels
    if not math.isfinite(value):
        raise TrainingError(f"training diverged: the loss is {value}")
    if tm.sharded and loss_sum is not None:
        (loss_sum * (group.world if n_labels else 0) / total_labels).backward()
    elif loss_sum is not None and n_labels:
        (loss_sum / total_labels).backward()
    if not tm.sharded:
        group.sum_grads(tm.params)
    torch.nn.utils.clip_grad_norm_(tm.params, GRAD_CLIP)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return Scores(value, total_correct / total_labels)


def _check_resume(spec: TrainSpec, state: dict[str, Any], n_examples: int) -> None:
    state = {"objective": "supervised", **state}  # checkpoints written before DPO existed
    expected = {
        "method": spec.method,
        "objective": spec.objective,
        "seed": spec.seed,
        "batch_size": spec.batch_size,
        "n_examples": n_examples,
    }
    wrong = {k: (state.get(k), v) for k, v in expected.items() if state.get(k) != v}
    if wrong:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs spec {b!r}" for k, (a, b) in wrong.items())
        raise TrainingError(f"checkpoint {spec.resume_from} does not fit this spec ({detail})")


def largest_batch_tokens(examples: list[EncodedExample], spec: TrainSpec) -> int:
    """An upper bound on the positions of any batch: the ``batch_size`` longest examples packed
    (varlen), or ``batch_size`` rows of the longest (padded)."""
    lengths = sorted((e.n_tokens for e in examples), reverse=True)
    if not lengths:
        return 0
    if spec.batch_layout == "padded":
        return spec.batch_size * lengths[0]
    return sum(lengths[: spec.batch_size])


def run_training(
    spec: TrainSpec,
    emit: Emit,
    *,
    should_pause: Callable[[], bool] | None = None,
    data_key: bytes | None = None,
    group: Group = SINGLE,
) -> Path | None:
    """Train per ``spec``, reporting through ``emit``; the final directory, or None when paused.

    ``data_key`` decrypts the train/valid files when the spec names them as encrypted blobs.
    With several ranks (``group``, ``distributed.py``) every rank calls this; only rank 0 emits and
    writes checkpoints and the final adapter.
    """
    placement = resolve_placement(spec.device, spec.precision)  # a forced choice that cannot run stops here
    parallel = group.world > 1
    torch.set_num_threads(max(1, spec.n_threads // group.local_world) if parallel else spec.n_threads)
    random.seed(spec.seed)
    torch.manual_seed(spec.seed)

    tokenizer = load_tokenizer(spec.base_model_path)
    pad_id = pad_token_id(tokenizer)
    train_key = data_key if spec.train_blob_key else None
    valid_key = data_key if spec.valid_blob_key else None
    dpo = spec.objective == "dpo"  # items are PreferencePairs (data.py), else EncodedExamples
    encode: Callable[..., list[Any]] = encode_preference_file if dpo else encode_file
    train = encode(tokenizer, spec.train_file, spec.max_length, "train_file", train_key, spec.train_blob_key)
    valid = (
        encode(tokenizer, spec.valid_file, spec.max_length, "valid_file", valid_key, spec.valid_blob_key)
        if spec.valid_file
        else []
    )
    per_epoch = steps_per_epoch(len(train), spec.batch_size)
    total = per_epoch * spec.n_epochs
    tokens_per_epoch = sum(e.n_tokens for e in train)

    run = RunState()
    resume_dir = Path(spec.resume_from) if spec.resume_from else None
    if resume_dir is not None:
        state = ckpt.read_state(resume_dir)
        _check_resume(spec, state, len(train))
        run = RunState(
            int(state["step"]), int(state["trained_tokens"]), dict(state["metrics"]), int(state["step"])
        )

    to_train = tokens_per_epoch * spec.n_epochs - run.trained_tokens
    if wants_cpu_bf16(spec, placement, to_train, group.world):  # auto: the fast path pays off (fast.py)
        placement = Placement(placement.device, placement.name, "bf16")
    placement.reset_peak_memory()
    tm = build_model(spec, resume_dir, placement, largest_batch_tokens(train, spec))
    sharding = strategy(spec.sharding, spec.method, group.world)
    if sharding == "fsdp":  # every rank loaded the same full weights: no broadcast (sharding.py)
        shard_model(tm, group)
    apply_compile(tm, spec, to_train)
    optimizer = torch.optim.AdamW(
        tm.params, lr=spec.learning_rate, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0
    )
    if resume_dir is not None:
        saved = ckpt.load_optimizer_state(resume_dir)
        optimizer.load_state_dict(shard_optimizer_state(optimizer, saved) if tm.sharded else saved)
        for param_group in optimizer.param_groups:
            param_group["lr"] = spec.learning_rate
    if sharding == "ddp":
        group.broadcast_params(tm.params)
    if dpo:  # the frozen reference's log-probabilities, once per run (dpo.py)
        train = with_reference(tm, train, spec.batch_size, pad_id)
        valid = with_reference(tm, valid, spec.batch_size, pad_id)

    def save_checkpoint() -> Path:
        """Rank 0 writes the checkpoint; sharded, every rank first helps gather the full state."""
        path = ckpt.checkpoint_dir(spec.checkpoints_dir, run.step)
        full = (full_model_state(tm), full_optimizer_state(optimizer, group.is_main)) if tm.sharded else None
        if not group.is_main:
            run.saved_step = run.step
            return path
        state = {
            "step": run.step,
            "epoch": epoch_of(run.step, per_epoch),
            "trained_tokens": run.trained_tokens,
            "metrics": run.metrics,
            "method": spec.method,
            "objective": spec.objective,
            "seed": spec.seed,
            "batch_size": spec.batch_size,
            "n_examples": len(train),
            "steps_per_epoch": per_epoch,
            "total_steps": total,
            "rng": {"scheme": RNG_SCHEME, "seed": spec.seed, "next_step": run.step + 1},
        }
        ckpt.save_checkpoint(path, tm.model, tokenizer, optimizer, state, full)
        run.saved_step = run.step
        return path

    emit(
        {
            "event": "started",
            "total_steps": total,
            "steps_per_epoch": per_epoch,
            "start_step": run.step,
            "n_examples": len(train),
            "tokens_per_epoch": tokens_per_epoch,
            "device": placement.name,
            "precision": placement.precision,
            "gradient_checkpointing": tm.gradient_checkpointing,
            **({"compiled": True} if tm.compiled else {}),
            **({"quantization": spec.quantization} if spec.quantization != "none" else {}),
            **({"processes": group.world, "sharding": sharding} if parallel else {}),
            **({"rank_parameters": local_parameters(tm)} if parallel else {}),
        }
    )
    every_eval = eval_interval(spec, total)
    mode = placement.precision + ("+compiled" if tm.compiled else "")
    mode += f"+{spec.quantization}" if spec.quantization != "none" else ""
    meter = StepMeter(tm.model, threads=spec.n_threads, peak_override=spec.peak_flops, mode=mode)
    if parallel and meter.peak is not None:
        meter.peak *= group.world  # MFU of the whole job: every rank's device counts
    orders: dict[int, list[list[int]]] = {}
    while run.step < total:
        step = run.step + 1
        epoch0, index = divmod(step - 1, per_epoch)
        if epoch0 not in orders:
            orders = {epoch0: epoch_batches(epoch_order(spec.seed, epoch0, len(train)), spec.batch_size)}
        chosen = [train[i] for i in orders[epoch0][index]]
        torch.manual_seed(derive_seed(spec.seed, "step", step))
        meter.start()  # the step alone: evaluation and checkpoints are not timed
        extra: dict[str, float | None] = {}  # DPO's own metrics (dpo.PreferenceScores.fields)
        if dpo:
            pref = (
                dpo_step_parallel(tm, optimizer, chosen, pad_id, spec.beta, GRAD_CLIP, group)
                if parallel
                else dpo_step(tm, optimizer, chosen, pad_id, spec.beta, GRAD_CLIP)
            )
            scores, extra = Scores(pref.loss, None), pref.fields()
        else:
            scores = (
                train_step_parallel(tm, optimizer, chosen, pad_id, group)
                if parallel
                else train_step(tm, optimizer, chosen, pad_id)
            )
        throughput = meter.stop(sequence_lengths(chosen) if dpo else [e.n_tokens for e in chosen])
        run.step = step
        run.trained_tokens += sum(e.n_tokens for e in chosen)

        checkpoint_due = step % per_epoch == 0 or (
            spec.checkpoint_every_steps > 0 and step % spec.checkpoint_every_steps == 0
        )
        eval_due = bool(valid) and (step % every_eval == 0 or step == total or checkpoint_due)
        v = Scores(None, None)
        if eval_due and not dpo:
            v = evaluate(tm, valid, spec.batch_size, pad_id, group)
        elif eval_due:
            pv = dpo_evaluate(tm, valid, spec.batch_size, pad_id, spec.beta, group)
            v = Scores(pv.loss, None)
            extra |= pv.fields("valid_") | (pv.fields("full_valid_") if step == total else {})
        # The last step reports the full validation loss, as OpenAI's does: ``evaluate`` scores every
        # example of the validation file (never a sample), so the last step's scores are that.
        full = v if step == total else Scores(None, None)
        run.metrics = (
            metrics_record(step, scores.loss, scores.accuracy, v.loss, v.accuracy, full.loss, full.accuracy)
            | extra
        )
        emit(
            {
                "event": "step",
                "step": step,
                "total_steps": total,
                "epoch": epoch_of(step, per_epoch),
                "train_loss": scores.loss,
                "train_accuracy": scores.accuracy,
                "valid_loss": v.loss,
                "valid_accuracy": v.accuracy,
                "full_valid_loss": full.loss,
                "full_valid_accuracy": full.accuracy,
                "trained_tokens": run.trained_tokens,
                **extra,
                **throughput,  # step_seconds, tokens_per_second, mfu, device_kind (training/flops.py)
            }
        )
        if checkpoint_due:
            path = save_checkpoint()
            emit(
                {
                    "event": "checkpoint",
                    "step": step,
                    "epoch": epoch_of(step, per_epoch),
                    "path": str(path),
                    "trained_tokens": run.trained_tokens,
                    "metrics": run.metrics,
                }
            )
        if spec.step_delay_seconds:
            time.sleep(spec.step_delay_seconds)
        wants_pause = step < total and should_pause is not None and should_pause()
        if parallel and step < total:  # rank 0 decides, so every rank stops after the same step
            wants_pause = group.decide(wants_pause or pause_requested(spec.output_dir), placement.device)
        if wants_pause:
            path = (
                ckpt.checkpoint_dir(spec.checkpoints_dir, step)
                if run.saved_step == step
                else save_checkpoint()
            )
            emit({"event": "paused", "step": step, "path": str(path), "trained_tokens": run.trained_tokens})
            return None

    weights = full_model_state(tm) if tm.sharded else None  # every rank gathers; rank 0 writes
    if not group.is_main:
        return None
    final = ckpt.save_final(spec.final_dir, tm.model, tokenizer, weights)
    emit(
        {
            "event": "done",
            "step": run.step,
            "adapter_path": str(final),
            "trained_tokens": run.trained_tokens,
            "peak_memory_bytes": placement.peak_memory_bytes(),
        }
    )
    return final

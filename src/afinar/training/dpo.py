"""Direct preference optimisation (DPO, Rafailov et al. 2023) on a LoRA adapter.

The policy is the base model with the adapter being trained; the reference is the same model with
the adapter switched off (``disable_adapter()`` under ``torch.no_grad``), so no second copy of the
weights is ever held. The reference is frozen, so its log-probabilities are computed once per run
(``with_reference``: every pair, in file order, in chunks of the batch size) and kept with the
pairs; a resumed run computes the very same numbers again. A fresh adapter (LoRA B = 0) is exactly
the reference, so the first step starts at loss log 2 and margin 0.

A sequence's log-probability is the sum over the tokens of its final assistant answer (its content
and end-of-turn token, labelled as supervised training labels them: ``datasets/encoding.py``) of
log p(token | everything before it), under the base model's chat template. For a pair with reward
margin ``m = β·((π_c − ref_c) − (π_r − ref_r))`` the loss is ``−log σ(m)``; a step reports the mean
loss, the mean margin and the preference accuracy (the share of pairs with ``m > 0``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from afinar.datasets.encoding import EncodedExample
from afinar.training.data import PreferencePair, collate
from afinar.training.distributed import SINGLE, Group
from afinar.training.model import TrainModel, label_logits
from afinar.training.protocol import PREFERENCE_SCORES


@dataclass(frozen=True)
class PreferenceScores:
    """Mean DPO loss, mean reward margin and preference accuracy over some pairs (None: no pairs)."""

    loss: float | None
    reward_margin: float | None
    accuracy: float | None

    @classmethod
    def of(cls, loss_sum: float, margin_sum: float, correct: float, n: float) -> PreferenceScores:
        if n <= 0:
            return cls(None, None, None)
        return cls(loss_sum / n, margin_sum / n, correct / n)

    def fields(self, prefix: str = "") -> dict[str, float | None]:
        """The step event's keys: ``dpo_loss``, ``reward_margin``, ``preference_accuracy`` (training)
        or ``valid_…`` / ``full_valid_…`` with ``prefix``."""
        values = (self.loss, self.reward_margin, self.accuracy)
        return {f"{prefix}{key}": v for key, v in zip(PREFERENCE_SCORES, values, strict=True)}


def sequence_lengths(pairs: Sequence[PreferencePair]) -> list[int]:
    """The lengths of the sequences a batch of pairs runs (chosen, rejected, … in order)."""
    return [n for p in pairs for n in (p.chosen.n_tokens, p.rejected.n_tokens)]


def _owners(
    examples: Sequence[EncodedExample], layout: str, width: int, device: torch.device
) -> torch.Tensor:
    """For every position of a collated batch (flattened), the index of the sequence it belongs to."""
    if layout == "varlen":
        lengths = torch.tensor([e.n_tokens for e in examples], device=device)
        return torch.repeat_interleave(torch.arange(len(examples), device=device), lengths)
    return torch.arange(len(examples), device=device).repeat_interleave(width)


def sequence_logps(tm: TrainModel, examples: Sequence[EncodedExample], pad_id: int) -> torch.Tensor:
    """Sum of log p(label token) over each sequence's labels, one fp32 value per sequence (0 for a
    sequence without labels). Differentiable when gradients are enabled."""
    batch = collate(list(examples), tm.layout, pad_id)
    logits, gold, keep = label_logits(tm, batch)
    token_logps = -F.cross_entropy(logits, gold, reduction="none")
    owners = _owners(examples, tm.layout, batch.targets.shape[-1], keep.device).index_select(0, keep)
    out = torch.zeros(len(examples), dtype=token_logps.dtype, device=token_logps.device)
    return out.index_add(0, owners, token_logps)


def _pair_logps(
    tm: TrainModel, pairs: Sequence[PreferencePair], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p of each chosen answer, of each rejected answer) under the current model, in one batch."""
    logps = sequence_logps(tm, [e for p in pairs for e in (p.chosen, p.rejected)], pad_id)
    return logps[0::2], logps[1::2]


def with_reference(
    tm: TrainModel, pairs: list[PreferencePair], batch_size: int, pad_id: int
) -> list[PreferencePair]:
    """``pairs`` with the reference model's log-probabilities: the model with its adapter off."""
    out: list[PreferencePair] = []
    was_training = tm.model.training
    tm.model.eval()
    try:
        with torch.no_grad(), tm.model.disable_adapter():
            for i in range(0, len(pairs), batch_size):
                chunk = pairs[i : i + batch_size]
                chosen, rejected = _pair_logps(tm, chunk, pad_id)
                out += [
                    p.with_reference(c, r)
                    for p, c, r in zip(chunk, chosen.tolist(), rejected.tolist(), strict=True)
                ]
    finally:
        tm.model.train(was_training)
    return out


def margins(tm: TrainModel, pairs: Sequence[PreferencePair], pad_id: int, beta: float) -> torch.Tensor:
    """Each pair's reward margin ``β·((π_c − ref_c) − (π_r − ref_r))`` under the current model."""
    chosen, rejected = _pair_logps(tm, pairs, pad_id)
    ref = torch.tensor(
        [p.ref_chosen - p.ref_rejected for p in pairs], dtype=chosen.dtype, device=chosen.device
    )
    return beta * ((chosen - rejected) - ref)


def _sums(m: torch.Tensor) -> tuple[torch.Tensor, float, int]:
    """(sum of the pairs' losses, with gradient; sum of the margins; pairs with a positive margin)."""
    return -F.logsigmoid(m).sum(), float(m.detach().sum().item()), int((m.detach() > 0).sum().item())


def _update(tm: TrainModel, optimizer: torch.optim.Optimizer, grad_clip: float) -> None:
    torch.nn.utils.clip_grad_norm_(tm.params, grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _check_finite(value: float) -> None:
    if not math.isfinite(value):
        raise FloatingPointError(f"training diverged: the loss is {value}")


def dpo_step(
    tm: TrainModel,
    optimizer: torch.optim.Optimizer,
    pairs: Sequence[PreferencePair],
    pad_id: int,
    beta: float,
    grad_clip: float,
) -> PreferenceScores:
    """One optimizer step on the mean DPO loss of ``pairs``."""
    loss_sum, margin_sum, correct = _sums(margins(tm, pairs, pad_id, beta))
    loss = loss_sum / len(pairs)
    value = float(loss.item())
    _check_finite(value)
    loss.backward()
    _update(tm, optimizer, grad_clip)
    return PreferenceScores(value, margin_sum / len(pairs), correct / len(pairs))


def dpo_step_parallel(
    tm: TrainModel,
    optimizer: torch.optim.Optimizer,
    pairs: Sequence[PreferencePair],
    pad_id: int,
    beta: float,
    grad_clip: float,
    group: Group,
) -> PreferenceScores:
    """``dpo_step`` over several ranks: each scores its share of the pairs; the mean over all pairs
    (all-reduced sums), gradients summed over the ranks, then the same update everywhere."""
    mine = group.shard(pairs)
    loss_sum: torch.Tensor | None = None
    margin_sum, correct = 0.0, 0
    if mine:
        loss_sum, margin_sum, correct = _sums(margins(tm, mine, pad_id, beta))
    local = float(loss_sum.item()) if loss_sum is not None else 0.0
    total_loss, total_margin, total_correct, n = group.sum(
        [local, margin_sum, correct, len(mine)], tm.placement.device
    )
    _check_finite(total_loss / n)
    if loss_sum is not None:
        (loss_sum / n).backward()
    group.sum_grads(tm.params)
    _update(tm, optimizer, grad_clip)
    return PreferenceScores.of(total_loss, total_margin, total_correct, n)


def dpo_evaluate(
    tm: TrainModel,
    pairs: Sequence[PreferencePair],
    batch_size: int,
    pad_id: int,
    beta: float,
    group: Group = SINGLE,
) -> PreferenceScores:
    """Mean DPO loss, margin and accuracy over every pair (each rank scores its share)."""
    mine = pairs if group.world == 1 else group.shard(pairs)
    loss_sum = margin_sum = 0.0
    correct = 0
    tm.model.eval()
    with torch.no_grad():
        for i in range(0, len(mine), batch_size):
            s, m, c = _sums(margins(tm, mine[i : i + batch_size], pad_id, beta))
            loss_sum, margin_sum, correct = loss_sum + float(s.item()), margin_sum + m, correct + c
    tm.model.train()
    if group.world == 1:
        return PreferenceScores.of(loss_sum, margin_sum, correct, len(mine))
    return PreferenceScores.of(*group.sum([loss_sum, margin_sum, correct, len(mine)], tm.placement.device))


def logp_margins(
    tm: TrainModel, pairs: Sequence[PreferencePair], batch_size: int, pad_id: int
) -> list[float]:
    """``log p(chosen) − log p(rejected)`` of each pair under the model as it is (no reference): how
    strongly the model itself prefers the preferred answer. Tests and benchmarks compare it before
    and after training."""
    out: list[float] = []
    was_training = tm.model.training
    tm.model.eval()
    with torch.no_grad():
        for i in range(0, len(pairs), batch_size):
            chosen, rejected = _pair_logps(tm, pairs[i : i + batch_size], pad_id)
            out += (chosen - rejected).tolist()
    tm.model.train(was_training)
    return out

"""A token and time estimate for a job, before any compute is spent (no money: billing prices it).

``billable_tokens`` follows the OpenAI rule (contract §3.5, §7): the tokens of every example after
truncation to the context length, times the number of epochs. Training processes every token of
the (truncated) sequence, not only the trained ones, so the time estimate divides the same number
by the training throughput: the one earlier jobs measured on this base (services/throughput.py),
else the catalogue's constant; ``speed_source`` says which.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from afinar.datasets.hyperparameters import ResolvedHyperparameters
from afinar.datasets.report import ValidationReport


@dataclass(frozen=True)
class Estimate:
    n_examples: int  # examples counted (those without errors)
    total_tokens: int  # one epoch, before truncation
    trained_tokens: int  # one epoch, assistant tokens with weight 1, after truncation
    billable_tokens: int  # billable_tokens_per_epoch × n_epochs
    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float
    n_steps: int  # optimizer steps: ceil(n_examples / batch_size) × n_epochs
    estimated_seconds: float
    train_tokens_per_second: float  # the speed assumed
    speed_source: str  # "measured" (by earlier jobs on this base) or "catalogue" (its constant)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate(
    report: ValidationReport,
    hyper: ResolvedHyperparameters,
    *,
    train_tokens_per_second: float,
    speed_source: str = "catalogue",
) -> Estimate:
    """Estimate a job from a validation report made with a tokenizer.

    Raises ``ValueError`` when the report has no token counts or the throughput is not positive.
    """
    if not train_tokens_per_second > 0 or not math.isfinite(train_tokens_per_second):
        raise ValueError("train_tokens_per_second must be a positive number")
    if (
        report.n_tokenized is None
        or report.total_tokens is None
        or report.trained_tokens is None
        or report.billable_tokens_per_epoch is None
    ):
        raise ValueError("the validation report has no token counts (validate with a tokenizer)")
    billable = report.billable_tokens_per_epoch * hyper.n_epochs
    steps_per_epoch = math.ceil(report.n_tokenized / hyper.batch_size) if report.n_tokenized else 0
    return Estimate(
        n_examples=report.n_tokenized,
        total_tokens=report.total_tokens,
        trained_tokens=report.trained_tokens,
        billable_tokens=billable,
        n_epochs=hyper.n_epochs,
        batch_size=hyper.batch_size,
        learning_rate_multiplier=hyper.learning_rate_multiplier,
        n_steps=steps_per_epoch * hyper.n_epochs,
        estimated_seconds=billable / train_tokens_per_second,
        train_tokens_per_second=train_tokens_per_second,
        speed_source=speed_source,
    )

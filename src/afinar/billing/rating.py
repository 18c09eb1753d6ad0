"""Rating: usage to money, in integer micro-dollars. Pure functions; no I/O, no floats, no Decimal.

Rounding: every priced quantity of every ledger record is rounded half up to the micro-dollar on
its own (``cost(tokens, price)``); sums are then exact. A chat completion thus has two rounded
amounts (its input and its output tokens), a training record one (its paid tokens).

The free training allowance is consumed at rating time, deterministically from the ledger: within
one organisation, UTC day and tier, training records take free tokens in the order
(``occurred_at``, ``key``) until the day's allowance is gone. A record written twice (a retry) is
one record (its key is unique), so it cannot consume the allowance twice, and the split does not
depend on the order in which records were written.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date

from afinar.billing.periods import utc_day

PER = 1_000_000  # prices are per 1M tokens


def cost(tokens: int, price_per_1m: int) -> int:
    """``tokens × price_per_1m / 1M`` micro-dollars, rounded half up."""
    if tokens < 0 or price_per_1m < 0:
        raise ValueError("tokens and prices are never negative")
    return (2 * tokens * price_per_1m + PER) // (2 * PER)


@dataclass(frozen=True)
class TrainingItem:
    key: str
    org_id: str
    tier: str
    occurred_at: int
    tokens: int
    price_per_1m: int


@dataclass(frozen=True)
class RatedTraining:
    key: str
    free_tokens: int
    paid_tokens: int
    cost: int  # micro-dollars, for the paid tokens


Allowance = Callable[[str, date], int]  # (tier, UTC day) → free training tokens for one organisation


def rate_training(items: Iterable[TrainingItem], allowance: Allowance) -> dict[str, RatedTraining]:
    """Rate training records; pass *every* record of the days involved (the allowance is per day)."""
    groups: dict[tuple[str, date, str], list[TrainingItem]] = defaultdict(list)
    for item in items:
        groups[(item.org_id, utc_day(item.occurred_at), item.tier)].append(item)
    out: dict[str, RatedTraining] = {}
    for (_, day, tier), members in groups.items():
        left = max(0, allowance(tier, day))
        for item in sorted(members, key=lambda i: (i.occurred_at, i.key)):
            free = min(left, item.tokens)
            left -= free
            paid = item.tokens - free
            out[item.key] = RatedTraining(item.key, free, paid, cost(paid, item.price_per_1m))
    return out


def free_tokens_used(rated: Iterable[RatedTraining]) -> int:
    return sum(r.free_tokens for r in rated)


def training_estimate(tokens: int, price_per_1m: int, free_left: int) -> int:
    """What a job of ``tokens`` would cost if it ended now, with ``free_left`` free tokens today."""
    return cost(max(0, tokens - max(0, free_left)), price_per_1m)

"""The free training allowance: tokens per organisation, per UTC day and per tier, up to a last day."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from afinar.billing.pricebook import PriceBook


@dataclass(frozen=True)
class AllowancePolicy:
    tokens_per_day: int  # the default for every tier
    until: date | None  # the last UTC day with an allowance (inclusive); None: no end
    pricebook: PriceBook | None = None  # tiers may set their own free_training_tokens_per_day

    def __call__(self, tier: str, day: date) -> int:
        if self.until is not None and day > self.until:
            return 0
        if self.pricebook is None:
            return self.tokens_per_day
        return self.pricebook.free_tokens_per_day(tier, self.tokens_per_day)

"""What a job would cost, from the billing price book and today's free allowance (None if unpriced)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from afinar.services.container import Container

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Quote:
    list_price: int  # micro-dollars for every billable token
    to_pay: int  # micro-dollars once today's free training tokens are used
    free_left: int  # free training tokens left today for the model's tier


def training_quote(c: Container, org_id: str, base_model: str, tokens: int) -> Quote | None:
    try:
        from afinar.billing.rating import cost, training_estimate

        usage = c.usage
        tier, price = usage.price_of(base_model)
        free_left = usage.allowance_today(org_id, tier).left
        return Quote(
            list_price=cost(tokens, price.training_per_1m),
            to_pay=training_estimate(tokens, price.training_per_1m, free_left),
            free_left=free_left,
        )
    except Exception:  # no billing on this server, or no price for this model: show tokens and time only
        log.info("no training price for %s", base_model, exc_info=True)
        return None

"""What a job would cost, for the dashboard's estimate (the usage billing service does the pricing)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from afinar.services.usage import TrainingQuote as Quote

if TYPE_CHECKING:
    from afinar.services.container import Container

log = logging.getLogger(__name__)

__all__ = ["Quote", "training_quote"]


def training_quote(c: Container, org_id: str, base_model: str, tokens: int) -> Quote | None:
    try:
        return c.usage.training_quote(org_id, base_model, tokens)
    except Exception:  # no billing on this server, or no price for this model: show tokens and time only
        log.info("no training price for %s", base_model, exc_info=True)
        return None

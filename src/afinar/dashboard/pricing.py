"""Training prices for estimates, from the billing price book (None where it cannot price)."""

from __future__ import annotations

import logging
from typing import Any

from afinar.services.container import Container

log = logging.getLogger(__name__)


def pricebook(c: Container) -> Any:
    """The container's price book, else the bundled one with the operator's file; None if absent."""
    book = getattr(c, "pricebook", None)
    if book is not None:
        return book
    try:
        from afinar.billing.pricebook import PriceBook
    except ImportError:
        return None
    try:
        return PriceBook.load(getattr(c.settings, "pricebook_file", None))
    except Exception:
        log.exception("the price book could not be read")
        return None


def training_cost(c: Container, base_model: str, tokens: int) -> int | None:
    """List price in micro-dollars of training ``tokens`` on ``base_model`` (before any free allowance)."""
    book = pricebook(c)
    entry = c.catalog.get(base_model)
    if book is None or entry is None:
        return None
    try:
        from afinar.billing.rating import cost

        return int(cost(tokens, book.price(entry.id, entry.tier).training_per_1m))
    except Exception:
        log.exception("could not price %s", base_model)
        return None


def usd(micros: int | None) -> str:
    """``1234567`` → ``$1.23``, with more digits for amounts under a cent."""
    if micros is None:
        return "—"
    dollars = micros / 1_000_000
    if 0 < micros < 10_000:
        return f"${dollars:.4f}"
    return f"${dollars:,.2f}"

"""Money is integer micro-dollars everywhere inside Afinar; these are the only conversions."""

from __future__ import annotations

MICROS_PER_DOLLAR = 1_000_000
MICROS_PER_CENT = 10_000


def cents_to_micros(cents: int) -> int:
    return cents * MICROS_PER_CENT


def micros_to_dollars(micros: int) -> float:
    """For the wire only (the OpenAI costs API sends a float amount)."""
    return micros / MICROS_PER_DOLLAR


def format_usd(micros: int) -> str:
    """``1234567`` → ``"$1.234567"`` (exact: no float on the way)."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_DOLLAR)
    return f"{sign}${whole}.{frac:06d}"

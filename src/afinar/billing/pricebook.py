"""The price book: prices per base model or per catalogue tier, in integer micro-dollars per 1M tokens.

The bundled ``pricebook.toml`` holds the tiers; an operator file (``AFINAR_PRICEBOOK_FILE``) adds or
replaces tiers and models. A model's own entry wins over its tier's. Fine-tuned models are billed at
their base model's prices.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from afinar.errors import ServerError

FIELDS = ("training_per_1m", "input_per_1m", "output_per_1m")


@dataclass(frozen=True)
class Price:
    """Micro-dollars per 1M tokens."""

    training_per_1m: int
    input_per_1m: int
    output_per_1m: int
    free_training_tokens_per_day: int | None = None  # None: the setting's value


class PriceNotFound(ServerError):
    default_code = "price_not_found"


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where} must be a non-negative integer (micro-dollars), not {value!r}")
    return value


def _price(raw: Any, where: str) -> Price:
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a table")
    unknown = set(raw) - {*FIELDS, "free_training_tokens_per_day"}
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    missing = [f for f in FIELDS if f not in raw]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}")
    free = raw.get("free_training_tokens_per_day")
    free_where = f"{where}.free_training_tokens_per_day"
    return Price(
        training_per_1m=_int(raw["training_per_1m"], f"{where}.training_per_1m"),
        input_per_1m=_int(raw["input_per_1m"], f"{where}.input_per_1m"),
        output_per_1m=_int(raw["output_per_1m"], f"{where}.output_per_1m"),
        free_training_tokens_per_day=None if free is None else _int(free, free_where),
    )


def _parse(text: str, source: str) -> tuple[dict[str, Price], dict[str, Price]]:
    data = tomllib.loads(text)
    tiers = {name: _price(raw, f"{source}: tiers.{name}") for name, raw in (data.get("tiers") or {}).items()}
    models = {
        name: _price(raw, f"{source}: models.{name}") for name, raw in (data.get("models") or {}).items()
    }
    return tiers, models


class PriceBook:
    def __init__(self, tiers: dict[str, Price], models: dict[str, Price] | None = None) -> None:
        self.tiers = dict(tiers)
        self.models = dict(models or {})

    @classmethod
    def load(cls, extra_file: Path | None = None) -> PriceBook:
        """The bundled price book, with the operator's file (if any) laid over it."""
        text = resources.files("afinar.billing").joinpath("pricebook.toml").read_text()
        tiers, models = _parse(text, "pricebook.toml")
        if extra_file is not None:
            more_tiers, more_models = _parse(Path(extra_file).read_text(), str(extra_file))
            tiers.update(more_tiers)
            models.update(more_models)
        return cls(tiers, models)

    def price(self, base_model: str, tier: str) -> Price:
        """The prices of a base model (its own entry, else its tier's)."""
        found = self.models.get(base_model) or self.tiers.get(tier)
        if found is None:
            raise PriceNotFound(
                f"The price book has no price for model '{base_model}' (tier '{tier}'). "
                "Add the tier or the model to the price book (AFINAR_PRICEBOOK_FILE)."
            )
        return found

    def free_tokens_per_day(self, tier: str, default: int) -> int:
        price = self.tiers.get(tier)
        if price is not None and price.free_training_tokens_per_day is not None:
            return price.free_training_tokens_per_day
        return default

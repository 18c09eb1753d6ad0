"""Hyperparameters: range checks on the request, and turning ``"auto"`` into numbers.

Ranges (contract §1.3): ``batch_size`` int 1..256, ``learning_rate_multiplier`` number > 0,
``n_epochs`` int 1..50, and for DPO ``beta`` with 0 < beta ≤ 2. Each also accepts ``"auto"``
(and a JSON null, read as ``"auto"``). Booleans are not numbers; integral floats such as ``3.0``
are accepted for integer fields and normalised to ``int``.

The ``"auto"`` rules, given ``n`` training examples:

* ``n_epochs``: the OpenAI cookbook rule. Aim for 3 epochs, but see at least 100 and at most
  25,000 examples in all: ``min(25, 100 // n)`` when ``3n < 100``, ``max(1, 25000 // n)`` when
  ``3n > 25000``, else 3. (10 examples → 10 epochs, as real OpenAI jobs show.)
* ``batch_size``: the legacy OpenAI rule, about 0.2 % of the examples, rounded to the nearest
  power of two and clamped to [1, 256]; so 1 up to ~700 examples, 2 around 1,000, 64 around
  25,000. An explicit batch size larger than the dataset is kept: the last batch is short.
* ``learning_rate_multiplier``: it scales the base learning rate that training uses for the
  method (``1.0`` = that base rate, which is tuned for a batch of ``REFERENCE_BATCH`` = 8).
  Auto follows the square-root rule for Adam: ``sqrt(batch_size / 8)``, clamped to [0.5, 2.0]
  and rounded to two decimals: 0.5 for batches up to 2, 1.0 at 8, 2.0 from 32 on. Small LoRA
  runs with batch 1 thus take smaller, less noisy steps; big batches go faster but never more
  than twice the base rate.
* ``beta`` (DPO only): 0.1, the value used by the DPO paper and TRL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from afinar.errors import InvalidRequest

TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25

BATCH_FRACTION = 0.002
MIN_BATCH, MAX_BATCH = 1, 256
REFERENCE_BATCH = 8
MIN_AUTO_LR_MULTIPLIER, MAX_AUTO_LR_MULTIPLIER = 0.5, 2.0
DEFAULT_BETA = 0.1

MAX_EPOCHS = 50
MAX_BETA = 2.0

METHODS = ("supervised", "dpo")
_COMMON = ("batch_size", "learning_rate_multiplier", "n_epochs")
ALLOWED: dict[str, tuple[str, ...]] = {"supervised": _COMMON, "dpo": (*_COMMON, "beta")}


@dataclass(frozen=True)
class ResolvedHyperparameters:
    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float
    beta: float | None = None  # DPO only

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "batch_size": self.batch_size,
            "learning_rate_multiplier": self.learning_rate_multiplier,
            "n_epochs": self.n_epochs,
        }
        if self.beta is not None:
            out["beta"] = self.beta
        return out


def auto_n_epochs(n_examples: int) -> int:
    if n_examples < 1:
        raise ValueError("n_examples must be at least 1")
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // n_examples)
    if n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_examples)
    return TARGET_EPOCHS


def auto_batch_size(n_examples: int) -> int:
    target = n_examples * BATCH_FRACTION
    if target <= MIN_BATCH:
        return MIN_BATCH
    return int(min(MAX_BATCH, 2 ** round(math.log2(target))))


def auto_learning_rate_multiplier(batch_size: int) -> float:
    value = math.sqrt(batch_size / REFERENCE_BATCH)
    return round(min(MAX_AUTO_LR_MULTIPLIER, max(MIN_AUTO_LR_MULTIPLIER, value)), 2)


def _is_auto(value: Any) -> bool:
    return value is None or value == "auto"


def _bad(prefix: str, key: str, value: Any, expected: str) -> InvalidRequest:
    shown = f"'{value}'" if isinstance(value, str) else repr(value)
    return InvalidRequest(f"Invalid value for {key}: {shown}. Expected {expected}.", param=f"{prefix}.{key}")


def _integer(prefix: str, key: str, value: Any, low: int, high: int) -> int:
    expected = f"an integer between {low} and {high}, or 'auto'"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(prefix, key, value, expected)
    if isinstance(value, float) and not value.is_integer():
        raise _bad(prefix, key, value, expected)
    if not low <= value <= high:
        raise _bad(prefix, key, value, expected)
    return int(value)


def _number(prefix: str, key: str, value: Any, expected: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(prefix, key, value, expected)
    return float(value)


def default_prefix(method: str) -> str:
    return f"method.{method}.hyperparameters"


def check_ranges(
    requested: dict[str, Any] | None, param_prefix: str, *, method: str | None = None
) -> dict[str, Any]:
    """Check the requested values; return them normalised (ints as int, "auto" for null/absent).

    Raises ``InvalidRequest`` with ``param`` = ``f"{param_prefix}.{field}"``, e.g.
    ``hyperparameters.n_epochs`` (deprecated top-level form) or
    ``method.supervised.hyperparameters.n_epochs``. Unknown fields (``beta`` outside DPO) are refused.
    ``method`` defaults to the one named by the prefix (``method.dpo.…`` → dpo), else supervised.
    """
    if method is None:
        method = "dpo" if param_prefix.startswith("method.dpo.") else "supervised"
    if method not in ALLOWED:
        raise ValueError(f"unknown method {method!r}")
    if requested is None:
        requested = {}
    if not isinstance(requested, dict):
        raise InvalidRequest("hyperparameters must be an object.", param=param_prefix)
    for key in requested:
        if key not in ALLOWED[method]:
            raise InvalidRequest(
                f"Unknown hyperparameter {key!r} for method {method!r}; "
                f"expected one of {', '.join(ALLOWED[method])}.",
                param=f"{param_prefix}.{key}",
            )
    out: dict[str, Any] = {}
    for key in ALLOWED[method]:
        value = requested.get(key)
        if _is_auto(value):
            out[key] = "auto"
        elif key == "n_epochs":
            out[key] = _integer(param_prefix, key, value, 1, MAX_EPOCHS)
        elif key == "batch_size":
            out[key] = _integer(param_prefix, key, value, MIN_BATCH, MAX_BATCH)
        elif key == "learning_rate_multiplier":
            number = _number(param_prefix, key, value, "a number greater than 0, or 'auto'")
            if number <= 0:
                raise _bad(param_prefix, key, value, "a number greater than 0, or 'auto'")
            out[key] = number
        else:  # beta
            expected = f"a number greater than 0 and at most {MAX_BETA:g}, or 'auto'"
            number = _number(param_prefix, key, value, expected)
            if not 0 < number <= MAX_BETA:
                raise _bad(param_prefix, key, value, expected)
            out[key] = number
    return out


def resolve(
    n_examples: int,
    requested: dict[str, Any] | None,
    method: str = "supervised",
    *,
    param_prefix: str | None = None,
) -> ResolvedHyperparameters:
    """Check ``requested`` (see ``check_ranges``) and replace every "auto" with its rule's value."""
    if n_examples < 1:
        raise ValueError("n_examples must be at least 1")
    values = check_ranges(requested, param_prefix or default_prefix(method), method=method)
    n_epochs = auto_n_epochs(n_examples) if values["n_epochs"] == "auto" else values["n_epochs"]
    batch = auto_batch_size(n_examples) if values["batch_size"] == "auto" else values["batch_size"]
    lrm = values["learning_rate_multiplier"]
    lrm = auto_learning_rate_multiplier(batch) if lrm == "auto" else lrm
    beta: float | None = None
    if method == "dpo":
        beta = DEFAULT_BETA if values["beta"] == "auto" else values["beta"]
    return ResolvedHyperparameters(
        n_epochs=n_epochs, batch_size=batch, learning_rate_multiplier=lrm, beta=beta
    )

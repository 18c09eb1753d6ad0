"""Writes to the usage ledger: one record per natural key, whatever the retries.

``training:<job id>``: written once, when the job ends — succeeded (its ``trained_tokens``) or
cancelled (the tokens of the last step it recorded). A failed job writes nothing.
``inference:<completion id>``: the prompt and completion tokens of one chat completion (all its
choices), streamed or not.

The caller passes the prices (micro-dollars per 1M tokens) in force when the usage happened; they
are stored with the record, so a later price change does not reprice the past.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from afinar.billing.pricebook import Price
from afinar.billing.rating import cost
from afinar.store import usage as repo

if TYPE_CHECKING:
    from afinar.store.db import Session


@dataclass(frozen=True)
class Attribution:
    """Who the usage belongs to."""

    org_id: str
    project_id: str | None
    api_key_id: str | None


def training_key(job_id: str) -> str:
    return f"training:{job_id}"


def inference_key(completion_id: str) -> str:
    return f"inference:{completion_id}"


def record_training(
    s: Session,
    who: Attribution,
    *,
    job_id: str,
    base_model: str,
    tier: str,
    price: Price,
    tokens: int,
    at: int,
) -> bool:
    """Inside the caller's transaction; True when this call wrote the record."""
    if tokens < 0:
        raise ValueError("trained tokens are never negative")
    return repo.insert_once(
        s,
        {
            "key": training_key(job_id),
            "kind": "training",
            "org_id": who.org_id,
            "project_id": who.project_id,
            "api_key_id": who.api_key_id,
            "job_id": job_id,
            "model": base_model,
            "base_model": base_model,
            "tier": tier,
            "occurred_at": int(at),
            "input_tokens": 0,
            "output_tokens": 0,
            "training_tokens": int(tokens),
            "num_requests": 0,
            "training_per_1m": price.training_per_1m,
            "input_per_1m": price.input_per_1m,
            "output_per_1m": price.output_per_1m,
            "input_cost": 0,
            "output_cost": 0,
        },
    )


def record_inference(
    s: Session,
    who: Attribution,
    *,
    completion_id: str,
    model: str,
    base_model: str,
    tier: str,
    price: Price,
    prompt_tokens: int,
    completion_tokens: int,
    at: int,
) -> bool:
    """Inside the caller's transaction; True when this call wrote the record."""
    if prompt_tokens < 0 or completion_tokens < 0:
        raise ValueError("token counts are never negative")
    return repo.insert_once(
        s,
        {
            "key": inference_key(completion_id),
            "kind": "inference",
            "org_id": who.org_id,
            "project_id": who.project_id,
            "api_key_id": who.api_key_id,
            "job_id": None,
            "model": model,
            "base_model": base_model,
            "tier": tier,
            "occurred_at": int(at),
            "input_tokens": int(prompt_tokens),
            "output_tokens": int(completion_tokens),
            "training_tokens": 0,
            "num_requests": 1,
            "training_per_1m": price.training_per_1m,
            "input_per_1m": price.input_per_1m,
            "output_per_1m": price.output_per_1m,
            "input_cost": cost(prompt_tokens, price.input_per_1m),
            "output_cost": cost(completion_tokens, price.output_per_1m),
        },
    )


def note_progress(s: Session, job_id: str, org_id: str, *, step: int, trained_tokens: int, at: int) -> None:
    """Inside the step's fenced transaction: what a cancellation would bill."""
    repo.note_progress(s, job_id, org_id, step, trained_tokens, int(at))

"""Webhooks: the event types Afinar emits, OpenAI's event payload, the retry schedule, secrets.

Pure rules shared by the store (the outbox), the services (endpoints, signing, delivery) and the
worker (the dispatcher). docs/api.md, "Webhooks", says the same to users.
"""

from __future__ import annotations

import base64
import os
from typing import Any

# The event types a project may subscribe to: OpenAI's names, spelled as OpenAI spells them
# (jobs are "cancelled", eval runs "canceled").
JOB_SUCCEEDED = "fine_tuning.job.succeeded"
JOB_FAILED = "fine_tuning.job.failed"
JOB_CANCELLED = "fine_tuning.job.cancelled"
RUN_SUCCEEDED = "eval.run.succeeded"
RUN_FAILED = "eval.run.failed"
RUN_CANCELED = "eval.run.canceled"
EVENT_TYPES: tuple[str, ...] = (
    JOB_SUCCEEDED,
    JOB_FAILED,
    JOB_CANCELLED,
    RUN_SUCCEEDED,
    RUN_FAILED,
    RUN_CANCELED,
)

# Delivery states: waiting for its next attempt, accepted (2xx), or given up after MAX_ATTEMPTS.
PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"

# Seconds to wait after the n-th failed attempt (n = 1, 2, ...): the first retry comes quickly, the
# last about 8 h after the first attempt; then the delivery is marked failed.
RETRY_DELAYS: tuple[int, ...] = (5, 30, 120, 600, 1800, 3600, 7200, 14400)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
OLD_SECRET_GRACE_SECONDS = 24 * 3600  # rotate_secret(keep_old_secret_active_for_24_hours=True)


def next_attempt_delay(failed_attempts: int) -> int | None:
    """Seconds until the next attempt after ``failed_attempts`` failures; None: give up."""
    if failed_attempts < 1:
        return 0
    if failed_attempts >= MAX_ATTEMPTS:
        return None
    return RETRY_DELAYS[failed_attempts - 1]


def event_payload(event_id: str, event_type: str, created_at: int, object_id: str) -> dict[str, Any]:
    """OpenAI's event body: ``{"id": "evt_…", "object": "event", "created_at", "type", "data": {"id"}}``."""
    return {
        "id": event_id,
        "object": "event",
        "created_at": created_at,
        "type": event_type,
        "data": {"id": object_id},
    }


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


def secret_hint(secret: str) -> str:
    """What may be shown after creation: the prefix and the last four characters."""
    return f"{SECRET_PREFIX}****{secret[-4:]}"


def is_success(status_code: int) -> bool:
    return 200 <= status_code < 300

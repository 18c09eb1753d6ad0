"""Leases on webhook deliveries: the dispatcher claims a due delivery the way a worker claims a job.

A claim is the compare-and-set of queue/leases.py on ``webhook_deliveries.lease_token``, so two
dispatchers (two worker processes, or the embedded worker and ``afinar worker``) never send the same
attempt; a dispatcher that dies mid-POST leaves a lease that expires, and the next claim sends the
delivery again with the same ``webhook-id`` (at least once; the receiver deduplicates).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from afinar.domain.webhooks import PENDING
from afinar.queue.leases import DELIVERIES
from afinar.store.db import Database
from afinar.store.tables import WebhookDelivery


@dataclass(frozen=True)
class DeliveryLease:
    delivery_id: str
    token: int
    owner: str


def claim_delivery(db: Database, owner: str, lease_seconds: float) -> DeliveryLease | None:
    """Take the delivery due first (pending, its next attempt time reached, no live lease), or None."""
    now = db.now()
    _, free = DELIVERIES.free(now)
    due = and_(
        WebhookDelivery.status == PENDING,
        WebhookDelivery.next_attempt_at.is_not(None),
        WebhookDelivery.next_attempt_at <= now,
        free,
    )
    stmt = (
        select(WebhookDelivery.id, WebhookDelivery.lease_token)
        .where(due)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.seq)
        .limit(5)
    )
    with db.session() as s:
        candidates = [(row_id, token) for row_id, token in s.execute(stmt)]
    got = DELIVERIES.claim_first(db, candidates, owner, now, lease_seconds, guard=due)
    return DeliveryLease(got[0], got[1], owner) if got else None


def take_delivery(s: Session, delivery: WebhookDelivery, owner: str, lease_seconds: float) -> DeliveryLease:
    """Lease a delivery the caller just created in its own transaction (a test call)."""
    return DeliveryLease(delivery.id, DELIVERIES.take(s, delivery, owner, lease_seconds), owner)


def fence_delivery(s: Session, lease: DeliveryLease, lease_seconds: float | None = None) -> WebhookDelivery:
    """Inside a transaction: prove the lease still holds and return the delivery (else ``LeaseLost``)."""
    return DELIVERIES.fence(s, lease.delivery_id, lease.token, lease.owner, lease_seconds)


def release_delivery(s: Session, lease: DeliveryLease) -> None:
    """Let the delivery go after recording an attempt (fenced)."""
    DELIVERIES.release(s, lease.delivery_id, lease.token, lease.owner)

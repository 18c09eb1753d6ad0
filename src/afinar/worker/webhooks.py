"""The webhook dispatcher: sends the outbox's due deliveries, one attempt per step.

The outbox rows are written with the job's or eval run's terminal state (store/webhooks.py
``emit``); this lane claims a due delivery with a lease (queue/webhooks.py), sends it and logs the
attempt (services/webhook_delivery.py), and schedules the retry on failure. Any number of workers
may run it against one database: the lease keeps two from sending the same attempt, and a
dispatcher that dies mid-send leaves a lease that expires, so the delivery is sent again
(at least once, deduplicable by ``webhook-id``).
"""

from __future__ import annotations

import logging

from afinar.queue.webhooks import claim_delivery
from afinar.services.webhook_delivery import LEASE_SECONDS, WebhookDeliverer
from afinar.store.db import Database

log = logging.getLogger("afinar.webhooks")


class WebhookDispatcher:
    def __init__(self, *, db: Database, deliverer: WebhookDeliverer) -> None:
        self.db = db
        self.deliverer = deliverer

    def run_once(self, owner: str) -> bool:
        """Send one due delivery (one attempt). False: none was due."""
        lease = claim_delivery(self.db, owner, LEASE_SECONDS)
        if lease is None:
            return False
        self.deliverer.deliver(lease)
        return True

    def drain(self, owner: str, limit: int = 1000) -> int:
        """Send every delivery due now (each once); how many attempts were made."""
        sent = 0
        while sent < limit and self.run_once(owner):
            sent += 1
        return sent

"""Sending one webhook attempt: sign with the Standard Webhooks scheme, POST, log, schedule the retry.

Headers: ``webhook-id`` (the delivery's id, the same on every retry, so a receiver deduplicates),
``webhook-timestamp`` and ``webhook-signature`` (``v1,<base64 HMAC-SHA256>`` of
``id.timestamp.body`` under each valid secret, space-separated while a rotated secret is still
valid), signed by the ``standardwebhooks`` library; ``client.webhooks.unwrap`` verifies them.

Which time is which: the ``webhook-timestamp`` is the moment of sending by the real clock
(``signing_clock``, the system clock), because receivers check it against their own wall clock
(the SDK refuses a timestamp more than five minutes off). Everything Afinar decides by time —
when a retry is due, the lease, the times in the delivery log — uses the database's clock, which
tests replace.

A 2xx answer delivers; anything else (another status, a timeout, a refused connection) is logged and
retried after ``RETRY_DELAYS`` until ``MAX_ATTEMPTS``, then the delivery is ``failed``. Redirects
are not followed (a redirect is a failed attempt) and the receiver's body is never stored.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from afinar.clock import Clock, system_clock
from afinar.domain.webhooks import DELIVERED, FAILED, is_success, next_attempt_delay
from afinar.errors import LeaseLost
from afinar.queue.webhooks import DeliveryLease, fence_delivery, release_delivery
from afinar.store import webhooks as repo
from afinar.store.db import Database

log = logging.getLogger("afinar.webhooks")

USER_AGENT = "Afinar-Webhooks/1"
LEASE_SECONDS = 60.0  # longer than one attempt (the POST times out well before)


@dataclass(frozen=True)
class Outcome:
    """One POST: the receiver's status code, or why there was none."""

    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and is_success(self.status_code)


def active_secrets(secrets: list[dict[str, Any]], now: float) -> list[str]:
    """The secrets to sign with: the current one, and a rotated one until it expires."""
    return [s["secret"] for s in secrets if s.get("expires_at") is None or s["expires_at"] > now]


def body_of(payload: dict[str, Any]) -> str:
    """The request body: compact JSON, the same bytes on every attempt."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


class WebhookSender:
    """Signs and POSTs; ``transport`` lets tests put an in-process receiver behind httpx."""

    def __init__(
        self,
        *,
        timeout_seconds: float = 10.0,
        signing_clock: Clock = system_clock,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.signing_clock = signing_clock
        self.transport = transport

    def headers(self, webhook_id: str, body: str, secrets: list[str]) -> dict[str, str]:
        at = datetime.fromtimestamp(int(self.signing_clock()), tz=UTC)
        signatures = " ".join(Webhook(secret).sign(webhook_id, at, body) for secret in secrets)
        return {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signatures,
        }

    def post(self, url: str, webhook_id: str, body: str, secrets: list[str]) -> Outcome:
        headers = self.headers(webhook_id, body, secrets)
        started = time.monotonic()
        try:
            with httpx.Client(
                timeout=self.timeout_seconds, follow_redirects=False, transport=self.transport
            ) as client:
                response = client.post(url, content=body.encode(), headers=headers)
            code: int | None = response.status_code
            error = None if is_success(response.status_code) else f"HTTP {response.status_code}"
        except httpx.TimeoutException:
            code, error = None, f"no answer within {self.timeout_seconds:g} s"
        except httpx.HTTPError as exc:
            code, error = None, f"{type(exc).__name__}: {exc}"
        return Outcome(code, error, int((time.monotonic() - started) * 1000))


class WebhookDeliverer:
    """Sends one leased delivery and records the attempt (``deliver``), for the dispatcher and the
    test call."""

    def __init__(self, *, db: Database, sender: WebhookSender) -> None:
        self.db = db
        self.sender = sender

    def deliver(self, lease: DeliveryLease, *, retry: bool = True) -> Outcome | None:
        """One attempt of the delivery under ``lease``; None when the lease was lost (another
        dispatcher has it, or its endpoint was deleted). ``retry`` False: a failure is final."""
        try:
            with self.db.session() as s:
                d = fence_delivery(s, lease, LEASE_SECONDS)
                endpoint = repo.endpoint_by_id(s, d.endpoint_id)
                event = repo.get_event(s, d.event_id)
                if endpoint is None or event is None:
                    return None
                url, payload = endpoint.url, event.payload
                secrets = active_secrets(endpoint.secrets, self.db.now())
        except LeaseLost:
            return None
        outcome = self.sender.post(url, lease.delivery_id, body_of(payload), secrets)
        try:
            with self.db.session() as s:
                d = fence_delivery(s, lease)
                repo.add_attempt(
                    s,
                    d,
                    status_code=outcome.status_code,
                    error=outcome.error,
                    duration_ms=outcome.duration_ms,
                )
                delay = next_attempt_delay(d.attempts) if retry else None
                if outcome.ok or delay is None:
                    d.status = DELIVERED if outcome.ok else FAILED
                    d.finished_at = int(self.db.now())
                    d.next_attempt_at = None
                else:
                    d.next_attempt_at = self.db.now() + delay
                release_delivery(s, lease)
        except LeaseLost:  # our lease ran out during the POST: whoever took it sends it again
            log.warning("webhook delivery %s: lease lost while sending; not logged", lease.delivery_id)
            return None
        log.info(
            "webhook delivery %s to %s: %s", lease.delivery_id, url, outcome.status_code or outcome.error
        )
        return outcome

"""Webhook endpoints of a project (``client.webhooks.create/list/retrieve/update/delete/
rotate_secret/test``) and their delivery log (``/v1/afinar/webhook_endpoints/{id}/deliveries``).

An endpoint belongs to the caller's project (a key without one: the default project) and receives
the subscribed events of that project's jobs and eval runs. The signing secret is shown once, when
the endpoint is created or its secret rotated, and is kept sealed with the organisation's data key
(store/sealed_columns.py). Events reach endpoints through the outbox (store/webhooks.py ``emit``)
and the dispatcher (worker/webhooks.py); ``test`` sends one sample event at once and answers with
the receiver's status code, logged like any attempt but never retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from afinar import ids
from afinar.domain.webhooks import (
    JOB_CANCELLED,
    JOB_FAILED,
    JOB_SUCCEEDED,
    OLD_SECRET_GRACE_SECONDS,
    new_secret,
    secret_hint,
)
from afinar.errors import InvalidRequest, NotFound
from afinar.queue.webhooks import take_delivery
from afinar.services.listing import check_limit
from afinar.services.webhook_delivery import LEASE_SECONDS, Outcome, WebhookDeliverer
from afinar.store import webhooks as repo
from afinar.store.db import Database
from afinar.store.pagination import Page
from afinar.store.tables import WebhookAttempt, WebhookDelivery, WebhookEndpoint

JOB_EVENTS = (JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED)


@dataclass(frozen=True)
class NewEndpoint:
    name: str
    url: str
    event_types: tuple[str, ...]


@dataclass(frozen=True)
class EndpointChanges:
    """``update``: the fields given (None: unchanged)."""

    name: str | None = None
    url: str | None = None
    event_types: tuple[str, ...] | None = None


@dataclass(frozen=True)
class DeliveryLog:
    """A page of an endpoint's deliveries, newest first, each with its attempts."""

    page: Page[WebhookDelivery]
    attempts: dict[str, list[WebhookAttempt]]


class WebhooksService:
    def __init__(self, *, db: Database, deliverer: WebhookDeliverer) -> None:
        self.db = db
        self.deliverer = deliverer

    def _project(self, org_id: str, project_id: str | None) -> str:
        with self.db.session() as s:
            return repo.resolve_project(s, org_id, project_id)

    def _now(self) -> int:
        return int(self.db.now())

    def create(self, org_id: str, project_id: str | None, req: NewEndpoint) -> tuple[WebhookEndpoint, str]:
        """The endpoint and its signing secret (the one time it is shown)."""
        project = self._project(org_id, project_id)
        secret = new_secret()
        now = self._now()
        row = WebhookEndpoint(
            id=repo.endpoint_id(),
            org_id=org_id,
            project_id=project,
            name=req.name,
            url=req.url,
            event_types=list(req.event_types),
            secrets=[{"secret": secret, "expires_at": None}],
            secret_hint=secret_hint(secret),
            created_at=now,
            updated_at=now,
        )
        with self.db.session() as s:
            s.add(row)
        return row, secret

    def list(
        self, org_id: str, project_id: str | None, *, after: str | None, limit: int
    ) -> Page[WebhookEndpoint]:
        check_limit(limit)
        project = self._project(org_id, project_id)
        with self.db.session() as s:
            return repo.endpoints_page(s, org_id, project, after=after, limit=limit)

    def get(self, org_id: str, project_id: str | None, endpoint_id: str) -> WebhookEndpoint:
        project = self._project(org_id, project_id)
        with self.db.session() as s:
            return _require(s, org_id, project, endpoint_id)

    def update(
        self, org_id: str, project_id: str | None, endpoint_id: str, changes: EndpointChanges
    ) -> WebhookEndpoint:
        """Change what was given; ``updated_at`` moves only when something actually changed."""
        project = self._project(org_id, project_id)
        with self.db.session() as s:
            row = _require(s, org_id, project, endpoint_id)
            wanted = {
                "name": changes.name,
                "url": changes.url,
                "event_types": list(changes.event_types) if changes.event_types is not None else None,
            }
            changed = False
            for attr, value in wanted.items():
                if value is not None and getattr(row, attr) != value:
                    setattr(row, attr, value)
                    changed = True
            if changed:
                row.updated_at = self._now()
        return row

    def delete(self, org_id: str, project_id: str | None, endpoint_id: str) -> str:
        """The endpoint goes with its log; deliveries still due are never sent."""
        project = self._project(org_id, project_id)
        with self.db.session() as s:
            repo.delete_endpoint(s, _require(s, org_id, project, endpoint_id))
        return endpoint_id

    def rotate_secret(
        self, org_id: str, project_id: str | None, endpoint_id: str, *, keep_old_for_24_hours: bool
    ) -> tuple[WebhookEndpoint, str]:
        """A new secret (shown once). The old one stops at once, or signs along with the new one
        for 24 hours (receivers accept either signature meanwhile)."""
        project = self._project(org_id, project_id)
        secret = new_secret()
        now = self._now()
        with self.db.session() as s:
            row = _require(s, org_id, project, endpoint_id)
            kept = []
            if keep_old_for_24_hours:
                current = next((x for x in row.secrets if x.get("expires_at") is None), None)
                if current is not None:
                    kept.append({"secret": current["secret"], "expires_at": now + OLD_SECRET_GRACE_SECONDS})
            row.secrets = [{"secret": secret, "expires_at": None}, *kept]
            row.secret_hint = secret_hint(secret)
            row.updated_at = now
        return row, secret

    def test(self, org_id: str, project_id: str | None, endpoint_id: str, event_type: str) -> Outcome:
        """Send one sample ``event_type`` event to the endpoint now; the receiver's answer, logged
        in the endpoint's deliveries. A receiver that cannot be reached is a 400 saying why."""
        row = self.get(org_id, project_id, endpoint_id)
        sample = ids.job_id() if event_type in JOB_EVENTS else ids.new_id("evalrun_")
        with self.db.session() as s:
            (delivery,) = repo.enqueue(s, org_id, row.project_id, event_type, sample, [row.id], due=False)
            lease = take_delivery(s, delivery, "test", LEASE_SECONDS)
        outcome = self.deliverer.deliver(lease, retry=False)
        if outcome is None or outcome.status_code is None:
            why = outcome.error if outcome is not None else "the endpoint was deleted"
            raise InvalidRequest(
                f"The test event could not be delivered to {row.url}: {why}.",
                param="webhook_endpoint_id",
                code="webhook_test_failed",
            )
        return outcome

    def deliveries(
        self, org_id: str, project_id: str | None, endpoint_id: str, *, after: str | None, limit: int
    ) -> DeliveryLog:
        check_limit(limit)
        self.get(org_id, project_id, endpoint_id)
        with self.db.session() as s:
            page = repo.deliveries_page(s, endpoint_id, after=after, limit=limit)
            return DeliveryLog(page, repo.attempts_of(s, [d.id for d in page.items]))


def _require(s: Any, org_id: str, project_id: str, endpoint_id: str) -> WebhookEndpoint:
    row = repo.get_endpoint(s, org_id, project_id, endpoint_id)
    if row is None:
        raise NotFound(f"No such webhook endpoint: {endpoint_id}", param="webhook_endpoint_id")
    return row

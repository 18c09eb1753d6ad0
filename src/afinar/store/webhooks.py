"""Webhook endpoints, the event outbox, deliveries and the delivery log (migration 0016_webhooks).

``emit`` is the outbox: it is called inside the transaction that moves a job or an eval run to a
terminal state, and writes the event and one pending delivery per subscribed endpoint there, so
the event exists exactly when the state change does — a process dying right after the commit
loses nothing; the dispatcher (worker/webhooks.py) sends it later. Endpoints are per project; a
row without a project (a job written by code that knows none) belongs to the default project.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from afinar import ids
from afinar.domain.webhooks import PENDING, event_payload
from afinar.store.admin import default_project_id
from afinar.store.db import session_now
from afinar.store.pagination import Page, paginate
from afinar.store.tables import EvalRun, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent


class Subject(Protocol):
    """What an event is about: a job or an eval run (its id, organisation and project)."""

    id: str
    org_id: str
    project_id: str | None


def endpoint_id() -> str:
    return ids.new_id("we_")


def delivery_id() -> str:
    """The ``webhook-id`` header: one per event and endpoint, the same on every retry."""
    return ids.new_id("wh_")


# --- endpoints -------------------------------------------------------------------------------------


def get_endpoint(s: Session, org_id: str, project_id: str, endpoint: str) -> WebhookEndpoint | None:
    return s.scalar(
        select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint,
            WebhookEndpoint.org_id == org_id,
            WebhookEndpoint.project_id == project_id,
        )
    )


def endpoint_by_id(s: Session, endpoint: str) -> WebhookEndpoint | None:
    return s.scalar(select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint))


def endpoints_page(
    s: Session, org_id: str, project_id: str, *, after: str | None, limit: int
) -> Page[WebhookEndpoint]:
    stmt = select(WebhookEndpoint).where(
        WebhookEndpoint.org_id == org_id, WebhookEndpoint.project_id == project_id
    )
    return paginate(s, stmt, WebhookEndpoint, after=after, limit=limit, desc=True)


def delete_endpoint(s: Session, endpoint: WebhookEndpoint) -> None:
    """The endpoint, its deliveries still due (never sent now) and its delivery log."""
    ids_ = select(WebhookDelivery.id).where(WebhookDelivery.endpoint_id == endpoint.id)
    s.execute(delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(ids_)))
    s.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))
    s.delete(endpoint)


def resolve_project(s: Session, org_id: str, project_id: str | None) -> str:
    """The project an endpoint or an event belongs to: rows without one are the default project's."""
    return project_id or default_project_id(s, org_id) or ""


# --- the outbox ------------------------------------------------------------------------------------


def emit(s: Session, event_type: str, subject: Subject) -> list[WebhookDelivery]:
    """Inside the caller's transaction: the event, and a pending delivery for each endpoint of the
    subject's project subscribed to ``event_type``. Nothing at all when no endpoint listens."""
    project = resolve_project(s, subject.org_id, subject.project_id)
    stmt = select(WebhookEndpoint.id, WebhookEndpoint.event_types).where(
        WebhookEndpoint.org_id == subject.org_id, WebhookEndpoint.project_id == project
    )
    targets = [ep_id for ep_id, types in s.execute(stmt.order_by(WebhookEndpoint.seq)) if event_type in types]
    if not targets:
        return []
    return enqueue(s, subject.org_id, project, event_type, subject.id, targets, due=True)


def enqueue(
    s: Session,
    org_id: str,
    project_id: str,
    event_type: str,
    object_id: str,
    endpoints: Sequence[str],
    *,
    due: bool,
) -> list[WebhookDelivery]:
    """An event and its deliveries; ``due`` False: no dispatcher takes them (a test call sends its
    own at once)."""
    now = session_now(s)
    event = WebhookEvent(
        id=ids.new_id("evt_"),
        org_id=org_id,
        project_id=project_id,
        type=event_type,
        object_id=object_id,
        created_at=int(now),
    )
    event.payload = event_payload(event.id, event_type, event.created_at, object_id)
    s.add(event)
    out = [
        WebhookDelivery(
            id=delivery_id(),
            org_id=org_id,
            endpoint_id=ep,
            event_id=event.id,
            event_type=event_type,
            status=PENDING,
            attempts=0,
            next_attempt_at=now if due else None,
            created_at=int(now),
            lease_token=0,
        )
        for ep in endpoints
    ]
    s.add_all(out)
    return out


def get_event(s: Session, event_id: str) -> WebhookEvent | None:
    return s.scalar(select(WebhookEvent).where(WebhookEvent.id == event_id))


# --- the delivery log ------------------------------------------------------------------------------


def deliveries_page(s: Session, endpoint: str, *, after: str | None, limit: int) -> Page[WebhookDelivery]:
    stmt = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint)
    return paginate(s, stmt, WebhookDelivery, after=after, limit=limit, desc=True)


def attempts_of(s: Session, delivery_ids: Sequence[str]) -> dict[str, list[WebhookAttempt]]:
    """Each delivery's attempts, first to last."""
    out: dict[str, list[WebhookAttempt]] = {d: [] for d in delivery_ids}
    if delivery_ids:
        stmt = select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(list(delivery_ids)))
        for row in s.scalars(stmt.order_by(WebhookAttempt.seq)):
            out[row.delivery_id].append(row)
    return out


def add_attempt(
    s: Session, delivery: WebhookDelivery, *, status_code: int | None, error: str | None, duration_ms: int
) -> WebhookAttempt:
    """Log one POST of ``delivery`` and count it."""
    delivery.attempts += 1
    row = WebhookAttempt(
        org_id=delivery.org_id,
        delivery_id=delivery.id,
        number=delivery.attempts,
        status_code=status_code,
        error=error[:500] if error else None,
        duration_ms=duration_ms,
        created_at=int(session_now(s)),
    )
    s.add(row)
    return row


def emit_run(s: Session, event_type: str, run: EvalRun) -> None:
    """``emit`` for an eval run the caller created; a gate run is a step of its fine-tuning job
    (whose own event reports the outcome), so it sends none."""
    if run.job_id is None:
        emit(s, event_type, run)

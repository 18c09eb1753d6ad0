"""Wire shapes of ``/v1/webhook_endpoints`` (``client.webhooks`` in the SDK: ``WebhookEndpoint``,
``WebhookEndpointWithSecret``, ``DeletedWebhookEndpoint``, ``WebhookEndpointTestResult``), of
``/v1/webhook_event_types``, and of Afinar's delivery log (``webhook_endpoint.delivery``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, model_validator

from afinar.api.schemas.lists import listing
from afinar.domain.webhooks import EVENT_TYPES
from afinar.errors import InvalidRequest
from afinar.services.webhooks import DeliveryLog, EndpointChanges, NewEndpoint
from afinar.store.pagination import Page
from afinar.store.tables import WebhookAttempt, WebhookDelivery, WebhookEndpoint

OBJECT = "webhook_endpoint"
MAX_NAME = 256
MAX_URL = 2048


def _name(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= MAX_NAME:
        raise InvalidRequest(f"'name' must be a string of 1 to {MAX_NAME} characters.", param="name")
    return value


def _url(value: Any) -> str:
    """An absolute http(s) URL with a host. OpenAI asks for HTTPS; a self-hosted server may also
    post to plain HTTP inside its own network."""
    parts = urlsplit(value) if isinstance(value, str) and len(value) <= MAX_URL else None
    if parts is None or parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidRequest(
            f"'url' must be an absolute https:// (or http://) URL of at most {MAX_URL} characters.",
            param="url",
        )
    return str(value)


def _event_type(value: Any, param: str) -> str:
    if value not in EVENT_TYPES:
        raise InvalidRequest(
            f"Unsupported webhook event type {value!r}: Afinar sends {', '.join(EVENT_TYPES)}.",
            param=param,
        )
    return str(value)


def _event_types(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise InvalidRequest("'event_types' must be a non-empty list of event types.", param="event_types")
    return tuple(dict.fromkeys(_event_type(v, "event_types") for v in value))


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


class EndpointCreate(BaseModel):
    """``POST /v1/webhook_endpoints``: ``{"name", "url", "event_types"}``, all required."""

    model_config = ConfigDict(frozen=True)

    name: str
    url: str
    event_types: tuple[str, ...]

    @model_validator(mode="before")
    @classmethod
    def _check(cls, body: Any) -> dict[str, Any]:
        body = _object(body)
        return {
            "name": _name(body.get("name")),
            "url": _url(body.get("url")),
            "event_types": _event_types(body.get("event_types")),
        }

    def to_domain(self) -> NewEndpoint:
        return NewEndpoint(self.name, self.url, self.event_types)


class EndpointUpdate(BaseModel):
    """``POST /v1/webhook_endpoints/{id}``: any of ``name``, ``url``, ``event_types`` (the whole set)."""

    model_config = ConfigDict(frozen=True)

    name: str | None = None
    url: str | None = None
    event_types: tuple[str, ...] | None = None

    @model_validator(mode="before")
    @classmethod
    def _check(cls, body: Any) -> dict[str, Any]:
        body = _object(body)
        out: dict[str, Any] = {}
        if body.get("name") is not None:
            out["name"] = _name(body["name"])
        if body.get("url") is not None:
            out["url"] = _url(body["url"])
        if body.get("event_types") is not None:
            out["event_types"] = _event_types(body["event_types"])
        return out

    def to_domain(self) -> EndpointChanges:
        return EndpointChanges(self.name, self.url, self.event_types)


class RotateSecret(BaseModel):
    """``POST /v1/webhook_endpoints/{id}/rotate_secret``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    keep_old_secret_active_for_24_hours: bool = False


class TestEvent(BaseModel):
    """``POST /v1/webhook_endpoints/{id}/test``: ``{"event_type"}``."""

    model_config = ConfigDict(frozen=True)

    event_type: str

    @model_validator(mode="before")
    @classmethod
    def _check(cls, body: Any) -> dict[str, Any]:
        return {"event_type": _event_type(_object(body).get("event_type"), "event_type")}


def endpoint(row: WebhookEndpoint) -> dict[str, Any]:
    return {
        "object": OBJECT,
        "id": row.id,
        "name": row.name,
        "url": row.url,
        "event_types": list(row.event_types),
        "signing_secret_hint": row.secret_hint,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def endpoint_with_secret(row: WebhookEndpoint, secret: str) -> dict[str, Any]:
    return endpoint(row) | {"signing_secret": secret}


def endpoint_list(page: Page[WebhookEndpoint]) -> dict[str, Any]:
    return listing(page.items, page.has_more, endpoint)


def endpoint_deleted(endpoint_id: str) -> dict[str, Any]:
    return {"object": "webhook_endpoint.deleted", "id": endpoint_id, "deleted": True}


def test_result(endpoint_id: str, event_type: str, status_code: int) -> dict[str, Any]:
    return {
        "object": "webhook_endpoint.test",
        "webhook_endpoint_id": endpoint_id,
        "event_type": event_type,
        "status_code": status_code,
        "success": True,
    }


def event_type_list() -> dict[str, Any]:
    return {"object": "list", "data": list(EVENT_TYPES)}


def _attempt(row: WebhookAttempt) -> dict[str, Any]:
    return {
        "attempt": row.number,
        "status_code": row.status_code,
        "error": row.error,
        "duration_ms": row.duration_ms,
        "created_at": row.created_at,
    }


def delivery_list(log: DeliveryLog) -> dict[str, Any]:
    """Afinar's delivery log: each delivery (its id is the ``webhook-id`` header) with its attempts."""

    def one(d: WebhookDelivery) -> dict[str, Any]:
        return {
            "object": "webhook_endpoint.delivery",
            "id": d.id,
            "event_id": d.event_id,
            "event_type": d.event_type,
            "status": d.status,
            "attempts": [_attempt(a) for a in log.attempts.get(d.id, [])],
            "next_attempt_at": int(d.next_attempt_at) if d.next_attempt_at is not None else None,
            "created_at": d.created_at,
            "finished_at": d.finished_at,
        }

    return listing(log.page.items, log.page.has_more, one)

"""``/v1/webhook_endpoints`` (``client.webhooks.create/list/retrieve/update/delete/rotate_secret/
test``), ``/v1/webhook_event_types`` (``client.webhooks.event_types.list``) and Afinar's delivery
log, ``/v1/afinar/webhook_endpoints/{id}/deliveries``. Endpoints belong to the key's project."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from afinar.api.deps import get_container, get_principal, json_body, parse_body
from afinar.api.idempotency import Idempotency, fingerprint, idempotency
from afinar.api.schemas import webhooks as schema
from afinar.domain.principal import Principal
from afinar.services.container import Container
from afinar.services.webhooks import WebhooksService

router = APIRouter(tags=["webhooks"])

Body = dict[str, Any]
PATH = "/webhook_endpoints"
ONE = PATH + "/{webhook_endpoint_id}"


def webhooks(c: Container = Depends(get_container)) -> WebhooksService:
    return c.webhooks


@router.post(PATH)
def create_endpoint(
    body: Body = Depends(json_body),
    p: Principal = Depends(get_principal),
    svc: WebhooksService = Depends(webhooks),
    idem: Idempotency = Depends(idempotency),
) -> Body:
    def create() -> Body:
        req = parse_body(schema.EndpointCreate, body).to_domain()
        row, secret = svc.create(p.org_id, p.project_id, req)
        return schema.endpoint_with_secret(row, secret)

    return idem.run(fingerprint(body), create)


@router.get(PATH)
def list_endpoints(
    after: str | None = None,
    limit: int = 20,
    p: Principal = Depends(get_principal),
    svc: WebhooksService = Depends(webhooks),
) -> Body:
    return schema.endpoint_list(svc.list(p.org_id, p.project_id, after=after, limit=limit))


@router.get(ONE)
def retrieve_endpoint(
    webhook_endpoint_id: str, p: Principal = Depends(get_principal), svc: WebhooksService = Depends(webhooks)
) -> Body:
    return schema.endpoint(svc.get(p.org_id, p.project_id, webhook_endpoint_id))


@router.post(ONE)
def update_endpoint(
    webhook_endpoint_id: str,
    body: Body = Depends(json_body),
    p: Principal = Depends(get_principal),
    svc: WebhooksService = Depends(webhooks),
) -> Body:
    svc.get(p.org_id, p.project_id, webhook_endpoint_id)  # an unknown endpoint is 404 before a bad body
    changes = parse_body(schema.EndpointUpdate, body).to_domain()
    return schema.endpoint(svc.update(p.org_id, p.project_id, webhook_endpoint_id, changes))


@router.delete(ONE)
def delete_endpoint(
    webhook_endpoint_id: str, p: Principal = Depends(get_principal), svc: WebhooksService = Depends(webhooks)
) -> Body:
    return schema.endpoint_deleted(svc.delete(p.org_id, p.project_id, webhook_endpoint_id))


@router.post(ONE + "/rotate_secret")
def rotate_secret(
    webhook_endpoint_id: str,
    body: Body = Depends(json_body),
    p: Principal = Depends(get_principal),
    svc: WebhooksService = Depends(webhooks),
) -> Body:
    req = parse_body(schema.RotateSecret, body)
    row, secret = svc.rotate_secret(
        p.org_id,
        p.project_id,
        webhook_endpoint_id,
        keep_old_for_24_hours=req.keep_old_secret_active_for_24_hours,
    )
    return schema.endpoint_with_secret(row, secret)


@router.post(ONE + "/test")
def test_endpoint(
    webhook_endpoint_id: str,
    body: Body = Depends(json_body),
    p: Principal = Depends(get_principal),
    svc: WebhooksService = Depends(webhooks),
) -> Body:
    svc.get(p.org_id, p.project_id, webhook_endpoint_id)
    event_type = parse_body(schema.TestEvent, body).event_type
    outcome = svc.test(p.org_id, p.project_id, webhook_endpoint_id, event_type)
    assert outcome.status_code is not None  # the service raises when the receiver gave no answer
    return schema.test_result(webhook_endpoint_id, event_type, outcome.status_code)


@router.get("/webhook_event_types")
def list_event_types(p: Principal = Depends(get_principal)) -> Body:
    return schema.event_type_list()


@router.get("/afinar" + ONE + "/deliveries")
def list_deliveries(
    webhook_endpoint_id: str,
    after: str | None = None,
    limit: int = 20,
    p: Principal = Depends(get_principal),
    svc: WebhooksService = Depends(webhooks),
) -> Body:
    log = svc.deliveries(p.org_id, p.project_id, webhook_endpoint_id, after=after, limit=limit)
    return schema.delivery_list(log)

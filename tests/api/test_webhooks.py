"""Webhook endpoints through the official SDK (``client.webhooks.*``, types validated strictly), the
test call against a receiver on 127.0.0.1 that verifies with ``client.webhooks.unwrap``, the delivery
log, project isolation and erasure with the organisation."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.webhooks import (
    DeletedWebhookEndpoint,
    FineTuningJobSucceededWebhookEvent,
    WebhookEndpoint,
    WebhookEndpointTestResult,
    WebhookEndpointWithSecret,
    WebhookEventTypeList,
)

from tests.support.data import chat_file
from tests.support.tiny_model import TINY
from tests.support.webhook_receiver import receiving

JOBS: Any = ["fine_tuning.job.succeeded", "fine_tuning.job.cancelled"]


def _strict(model: Any, raw: Any) -> Any:
    return model.model_validate(raw.http_response.json(), strict=True)


def _deliveries(client: openai.OpenAI, endpoint_id: str) -> list[dict[str, Any]]:
    page = client.get(f"/afinar/webhook_endpoints/{endpoint_id}/deliveries", cast_to=object)
    assert isinstance(page, dict) and page["object"] == "list"
    data: list[dict[str, Any]] = page["data"]
    return data


def test_endpoint_crud_with_the_sdk(client: openai.OpenAI, clock: Any) -> None:
    raw = client.webhooks.with_raw_response.create(
        name="ops", url="https://hooks.example.com/a", event_types=JOBS
    )
    made = _strict(WebhookEndpointWithSecret, raw)
    assert made.object == "webhook_endpoint" and made.signing_secret.startswith("whsec_")
    assert made.signing_secret_hint == "whsec_****" + made.signing_secret[-4:]
    assert made.event_types == JOBS and made.created_at == made.updated_at == int(clock.now)

    got = _strict(WebhookEndpoint, client.webhooks.with_raw_response.retrieve(made.id))
    assert "signing_secret" not in client.webhooks.with_raw_response.retrieve(made.id).http_response.json()
    assert (got.id, got.name, got.url) == (made.id, "ops", "https://hooks.example.com/a")
    assert [e.id for e in client.webhooks.list()] == [made.id]

    clock.advance(60)
    same = client.webhooks.update(made.id, name="ops")  # unchanged: updated_at stays
    assert same.updated_at == made.created_at
    raw = client.webhooks.with_raw_response.update(made.id, event_types=["fine_tuning.job.failed"])
    changed = _strict(WebhookEndpoint, raw)
    assert changed.event_types == ["fine_tuning.job.failed"] and changed.updated_at == made.created_at + 60

    rotated = _strict(WebhookEndpointWithSecret, client.webhooks.with_raw_response.rotate_secret(made.id))
    assert (
        rotated.signing_secret != made.signing_secret
        and rotated.signing_secret_hint != made.signing_secret_hint
    )

    types = _strict(WebhookEventTypeList, client.webhooks.event_types.with_raw_response.list())
    assert set(types.data) == {*JOBS, "fine_tuning.job.failed", "eval.run.succeeded", "eval.run.failed",
                               "eval.run.canceled"}  # fmt: skip

    gone = _strict(DeletedWebhookEndpoint, client.webhooks.with_raw_response.delete(made.id))
    assert gone.deleted and gone.id == made.id and gone.object == "webhook_endpoint.deleted"
    with pytest.raises(openai.NotFoundError):
        client.webhooks.retrieve(made.id)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"url": "ftp://hooks.example.com", "event_types": JOBS}, "url"),
        ({"url": "https://hooks.example.com", "event_types": ["batch.completed"]}, "event_types"),
        ({"url": "https://hooks.example.com", "event_types": []}, "event_types"),
    ],
)
def test_create_refusals(client: openai.OpenAI, kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.webhooks.create(name="x", **kwargs)
    assert err.value.param == param


def test_endpoints_belong_to_their_project(admin: openai.OpenAI, bot: openai.OpenAI) -> None:
    mine = bot.webhooks.create(name="bot", url="https://hooks.example.com", event_types=JOBS)
    assert [e.id for e in admin.webhooks.list()] == []
    for call in (admin.webhooks.retrieve, admin.webhooks.delete):
        with pytest.raises(openai.NotFoundError):
            call(mine.id)
    assert [e.id for e in bot.webhooks.list()] == [mine.id]


def test_create_honours_idempotency_key(client: openai.OpenAI) -> None:
    headers = {"Idempotency-Key": "hook-1"}
    args: Any = {"name": "a", "url": "https://hooks.example.com", "event_types": JOBS}
    first = client.webhooks.create(**args, extra_headers=headers)
    again = client.webhooks.create(**args, extra_headers=headers)
    assert again.id == first.id and again.signing_secret == first.signing_secret
    assert len(client.webhooks.list().data) == 1


def test_test_call_delivers_a_signed_sample_event(client: openai.OpenAI) -> None:
    with receiving(client) as rx:
        ep = client.webhooks.create(name="rx", url=rx.url, event_types=JOBS)
        rx.secret = ep.signing_secret
        raw = client.webhooks.with_raw_response.test(ep.id, event_type="fine_tuning.job.succeeded")
        result = _strict(WebhookEndpointTestResult, raw)
    assert (result.status_code, result.success, result.webhook_endpoint_id) == (200, True, ep.id)
    assert rx.rejected == [] and len(rx.requests) == 1
    webhook_id, event = rx.requests[0]
    assert isinstance(event, FineTuningJobSucceededWebhookEvent)
    assert event.object == "event" and event.id.startswith("evt_") and event.data.id.startswith("ftjob-")
    (log,) = _deliveries(client, ep.id)
    assert (log["id"], log["status"], log["event_type"]) == (
        webhook_id,
        "delivered",
        "fine_tuning.job.succeeded",
    )
    assert [(a["attempt"], a["status_code"]) for a in log["attempts"]] == [(1, 200)]


def test_test_call_reports_the_receivers_answer_and_refused_connections(client: openai.OpenAI) -> None:
    with receiving(client, fail_first=1) as rx:
        ep = client.webhooks.create(name="rx", url=rx.url, event_types=JOBS)
        rx.secret = ep.signing_secret
        assert client.webhooks.test(ep.id, event_type="fine_tuning.job.cancelled").status_code == 500
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/"
    client.webhooks.update(ep.id, url=closed)
    with pytest.raises(openai.BadRequestError) as err:
        client.webhooks.test(ep.id, event_type="fine_tuning.job.cancelled")
    assert err.value.code == "webhook_test_failed"
    logs = _deliveries(client, ep.id)
    assert [d["status"] for d in logs] == ["failed", "failed"]  # a test is never retried
    assert logs[0]["attempts"][0]["status_code"] is None and logs[0]["attempts"][0]["error"]


def test_secret_is_sealed_and_erased_with_the_organisation(
    client: openai.OpenAI, container: Any, tmp_path: Path
) -> None:
    from sqlalchemy import func, select, text

    from afinar.store.tables import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent

    ep = client.webhooks.create(name="a", url="https://hooks.example.com", event_types=JOBS)
    fid = client.files.create(file=chat_file(tmp_path / "t.jsonl", 10).open("rb"), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model=TINY, training_file=fid)
    client.fine_tuning.jobs.cancel(job.id)
    with container.db.engine.connect() as conn:
        raw = conn.execute(text("SELECT secrets FROM webhook_endpoints")).scalar_one()
    assert ep.signing_secret not in str(raw) and "$afinar_sealed" in str(raw)

    container.erasure.delete_org(job.organization_id)
    with container.db.session() as s:
        for table in (WebhookEndpoint, WebhookEvent, WebhookDelivery, WebhookAttempt):
            assert s.scalar(select(func.count()).select_from(table)) == 0, table.__tablename__


def test_rotated_secret_old_one_signs_for_24_hours_only_when_asked(client: openai.OpenAI, clock: Any) -> None:
    with receiving(client) as rx:
        ep = client.webhooks.create(name="rx", url=rx.url, event_types=JOBS)
        rx.secret = ep.signing_secret  # the receiver still knows only the first secret
        client.webhooks.rotate_secret(ep.id, keep_old_secret_active_for_24_hours=True)
        assert client.webhooks.test(ep.id, event_type="fine_tuning.job.cancelled").status_code == 200
        clock.advance(24 * 3600 + 1)  # the old secret has expired
        assert client.webhooks.test(ep.id, event_type="fine_tuning.job.cancelled").status_code == 400
        newest = client.webhooks.rotate_secret(ep.id)  # the old secret stops at once
        assert client.webhooks.test(ep.id, event_type="fine_tuning.job.cancelled").status_code == 400
        rx.secret = newest.signing_secret
        assert client.webhooks.test(ep.id, event_type="fine_tuning.job.cancelled").status_code == 200
    assert len(rx.rejected) == 2 and len(rx.requests) == 2

"""The webhook outbox and its dispatcher: events written with the terminal state change (present
even when no dispatcher ran), retries with backoff on the injected clock, the same ``webhook-id``
on every attempt, leases between dispatchers, and delivery to a receiver on 127.0.0.1 that verifies
each request with the SDK's ``client.webhooks.unwrap``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
from openai.types.webhooks import (
    EvalRunCanceledWebhookEvent,
    EvalRunSucceededWebhookEvent,
    FineTuningJobCancelledWebhookEvent,
    FineTuningJobFailedWebhookEvent,
    FineTuningJobSucceededWebhookEvent,
)

from tests.support.data import chat_file
from tests.support.evals import EXACT_MATCH, jsonl_source, make_eval
from tests.support.tiny_model import TINY
from tests.support.webhook_receiver import receiving
from tests.support.worker import run_worker

CANCELLED: Any = ["fine_tuning.job.cancelled"]


def _dispatcher(container: Any) -> Any:
    from afinar.worker.loop import Worker

    return Worker(container).webhook_dispatcher


def _outbox(container: Any) -> list[Any]:
    from sqlalchemy import select

    from afinar.store.tables import WebhookDelivery

    with container.db.session() as s:
        return list(s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.seq)))


def _event(container: Any, event_id: str) -> dict[str, Any]:
    from afinar.store import webhooks

    with container.db.session() as s:
        ev = webhooks.get_event(s, event_id)
        assert ev is not None
        return dict(ev.payload)


def _cancelled_job(client: openai.OpenAI, tmp_path: Path) -> str:
    fid = client.files.create(file=chat_file(tmp_path / "t.jsonl", 10).open("rb"), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model=TINY, training_file=fid)
    client.fine_tuning.jobs.cancel(job.id)
    return job.id


def test_event_is_in_the_outbox_when_the_job_ends_even_if_no_dispatcher_ran(
    client: openai.OpenAI, container: Any, settings: Any, clock: Any, tmp_path: Path
) -> None:
    from afinar.services.container import Container

    with receiving(client) as rx:
        ep = client.webhooks.create(name="rx", url=rx.url, event_types=CANCELLED)
        client.webhooks.create(name="other", url=rx.url, event_types=["fine_tuning.job.succeeded"])
        rx.secret = ep.signing_secret
        job_id = _cancelled_job(client, tmp_path)

        (row,) = _outbox(container)  # committed with the cancellation; only the subscribed endpoint
        assert (row.endpoint_id, row.status, row.attempts) == (ep.id, "pending", 0)
        assert _event(container, row.event_id) == {
            "id": row.event_id,
            "object": "event",
            "created_at": int(clock.now),
            "type": "fine_tuning.job.cancelled",
            "data": {"id": job_id},
        }
        # The process that cancelled is gone; a new one (another worker) finds the event and sends it.
        fresh = Container(settings, clock=clock)
        try:
            assert _dispatcher(fresh).drain("other-worker") == 1
        finally:
            fresh.close()
    assert rx.rejected == []
    ((webhook_id, event),) = rx.requests
    assert webhook_id == row.id and isinstance(event, FineTuningJobCancelledWebhookEvent)
    assert event.data.id == job_id and event.id == row.event_id
    assert [d.status for d in _outbox(container)] == ["delivered"]


def test_receiver_failing_twice_sees_the_event_once_after_three_attempts(
    client: openai.OpenAI, container: Any, clock: Any, tmp_path: Path
) -> None:
    from afinar.domain.webhooks import RETRY_DELAYS

    dispatcher = _dispatcher(container)
    with receiving(client, fail_first=2) as rx:
        ep = client.webhooks.create(name="flaky", url=rx.url, event_types=CANCELLED)
        rx.secret = ep.signing_secret
        _cancelled_job(client, tmp_path)
        t0 = int(clock.now)
        assert dispatcher.run_once("w") is True  # 500
        assert dispatcher.run_once("w") is False  # backing off: not due yet
        clock.advance(RETRY_DELAYS[0])
        assert dispatcher.run_once("w") is True  # 500 again
        clock.advance(RETRY_DELAYS[1] - 1)
        assert dispatcher.run_once("w") is False
        clock.advance(1)
        assert dispatcher.run_once("w") is True  # 200
        assert dispatcher.run_once("w") is False  # delivered: nothing left
    assert rx.rejected == []
    assert len(rx.requests) == 3 and len({wid for wid, _ in rx.requests}) == 1  # same webhook-id
    assert len(rx.applied) == 1  # the application saw it once
    log = client.get(f"/afinar/webhook_endpoints/{ep.id}/deliveries", cast_to=object)
    assert isinstance(log, dict)
    (delivery,) = log["data"]
    assert delivery["status"] == "delivered" and delivery["id"] == rx.requests[0][0]
    attempts = [(a["attempt"], a["status_code"], a["created_at"]) for a in delivery["attempts"]]
    assert attempts == [
        (1, 500, t0),
        (2, 500, t0 + RETRY_DELAYS[0]),
        (3, 200, t0 + RETRY_DELAYS[0] + RETRY_DELAYS[1]),
    ]


def test_gives_up_after_the_last_retry(
    client: openai.OpenAI, container: Any, clock: Any, tmp_path: Path
) -> None:
    from afinar.domain.webhooks import MAX_ATTEMPTS, RETRY_DELAYS

    dispatcher = _dispatcher(container)
    with receiving(client, fail_first=10**6) as rx:
        ep = client.webhooks.create(name="down", url=rx.url, event_types=CANCELLED)
        rx.secret = ep.signing_secret
        _cancelled_job(client, tmp_path)
        for delay in (0, *RETRY_DELAYS):
            clock.advance(delay)
            assert dispatcher.run_once("w") is True
        clock.advance(10**6)
        assert dispatcher.run_once("w") is False
    (row,) = _outbox(container)
    assert (row.status, row.attempts, len(rx.requests)) == ("failed", MAX_ATTEMPTS, MAX_ATTEMPTS)


def test_a_lease_keeps_other_dispatchers_off_until_it_expires(
    client: openai.OpenAI, container: Any, clock: Any, tmp_path: Path
) -> None:
    from afinar.queue.webhooks import claim_delivery
    from afinar.services.webhook_delivery import LEASE_SECONDS

    client.webhooks.create(name="a", url="http://127.0.0.1:9/", event_types=CANCELLED)
    _cancelled_job(client, tmp_path)
    first = claim_delivery(container.db, "w1", LEASE_SECONDS)
    assert first is not None
    assert claim_delivery(container.db, "w2", LEASE_SECONDS) is None  # w1 is sending it
    clock.advance(LEASE_SECONDS + 1)  # w1 died mid-send: the delivery goes out again
    second = claim_delivery(container.db, "w2", LEASE_SECONDS)
    assert second is not None and second.delivery_id == first.delivery_id
    assert container.webhook_deliverer.deliver(first) is None  # w1's late result is fenced out


def test_job_success_failure_and_eval_run_events(
    client: openai.OpenAI, container: Any, tmp_path: Path
) -> None:
    """Each terminal transition's own code path writes its event: publication (succeeded, driven
    directly with a stand-in adapter so no training runs), validation failure and eval runs (the
    worker), cancellation of a run (the API)."""
    from afinar.domain.jobs import TrainedAdapter
    from afinar.store import jobs as jobs_repo

    dispatcher = _dispatcher(container)
    types: Any = [
        "fine_tuning.job.succeeded",
        "fine_tuning.job.failed",
        "eval.run.succeeded",
        "eval.run.canceled",
    ]
    with receiving(client) as rx:
        ep = client.webhooks.create(name="all", url=rx.url, event_types=types)
        rx.secret = ep.signing_secret
        few = client.files.create(
            file=chat_file(tmp_path / "few.jsonl", 2).open("rb"), purpose="fine-tune"
        ).id
        failed = client.fine_tuning.jobs.create(model=TINY, training_file=few)
        ev = make_eval(client, [EXACT_MATCH])
        source: Any = jsonl_source([({"question": "q", "answer": "a"}, "a")])
        run = client.evals.runs.create(ev.id, data_source=source)
        canceled = client.evals.runs.create(ev.id, data_source=source)
        client.evals.runs.cancel(canceled.id, eval_id=ev.id)
        run_worker(container)
        assert client.fine_tuning.jobs.retrieve(failed.id).status == "failed"

        fid = client.files.create(file=chat_file(tmp_path / "t.jsonl", 10).open("rb"), purpose="fine-tune").id
        job = client.fine_tuning.jobs.create(model=TINY, training_file=fid)
        adapter = tmp_path / "adapter"
        adapter.mkdir()
        (adapter / "adapter_config.json").write_text("{}")

        def write(fn: Any) -> Any:
            with container.db.session() as s:
                return fn(s, jobs_repo.get_any(s, job.id))

        row = write(lambda s, j: j)
        container.publisher.publish(
            row, TrainedAdapter(adapter, 100, 1), {}, write=write, release=lambda s: None
        )
        assert client.fine_tuning.jobs.retrieve(job.id).status == "succeeded"
        assert dispatcher.drain("w") == 4
    assert rx.rejected == []
    got = {type(e): e.data.id for _, e in rx.requests}
    assert got == {
        EvalRunCanceledWebhookEvent: canceled.id,
        FineTuningJobFailedWebhookEvent: failed.id,
        FineTuningJobSucceededWebhookEvent: job.id,
        EvalRunSucceededWebhookEvent: run.id,
    }

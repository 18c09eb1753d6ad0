"""Training is billed from real jobs run by the worker: allowance, cancel, crash and resume, spend limits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from afinar.billing.rating import cost
from afinar.services.orgs import Principal
from afinar.store import jobs as jobs_repo
from afinar.store import usage as repo
from afinar.store.tables import UsageRecord
from tests.support.billing import create, roomy_settings  # noqa: F401  (fixture: settings)
from tests.support.clock import DAY, DAY0, T0
from tests.support.data import chat_file
from tests.support.tiny_model import TINY
from tests.support.wait import wait_for
from tests.support.worker import run_worker

MINI_TRAINING = 3_000_000  # µ$ per 1M tokens: 3 µ$ a token


def training_records(c: Any, org_id: str) -> list[UsageRecord]:
    with c.db.session() as s:
        return repo.between(s, org_id, 0, 2**62, kind="training")


@pytest.fixture
def train_id(client: openai.OpenAI, tmp_path: Path) -> str:
    return client.files.create(
        file=chat_file(tmp_path / "train.jsonl", 12).open("rb"), purpose="fine-tune"
    ).id


def line_items(admin: openai.OpenAI, start: int = DAY0) -> list[dict[str, Any]]:
    """Per-day {line_item: (quantity, amount_micros)} from the costs API."""
    raw = admin.admin.organization.usage.with_raw_response.costs(start_time=start, group_by=["line_item"])
    return [
        {r["line_item"]: (r["quantity"], r["amount_micros"]) for r in b["results"]}
        for b in raw.http_response.json()["data"]
    ]


def test_one_jobs_cost_is_trained_tokens_times_price_minus_the_allowance(
    client: openai.OpenAI,
    admin: openai.OpenAI,
    container: Any,
    clock: Any,
    principal: Principal,
    train_id: str,
) -> None:
    container.settings.free_training_tokens_per_day = 300
    body = {"model": TINY, "training_file": train_id, "hyperparameters": {"n_epochs": 2, "batch_size": 4}}
    estimate: dict[str, Any] = client.post("/afinar/estimates", cast_to=object, body=body)  # type: ignore[assignment]
    job = create(client, train_id)
    run_worker(container)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded" and job.trained_tokens and job.trained_tokens > 300
    # the dry run quoted exactly what the job is billed: its tokens less today's 300 free ones
    assert estimate["billable_tokens"] == job.trained_tokens
    assert estimate["cost"]["free_training_tokens_applied"] == 300
    assert estimate["cost"]["amount"] == pytest.approx((job.trained_tokens - 300) * 3 / 1e6)
    [rec] = training_records(container, principal.org_id)
    assert (rec.key, rec.training_tokens, rec.job_id, rec.model, rec.occurred_at) == (
        f"training:{job.id}",
        job.trained_tokens,
        job.id,
        TINY,
        T0,
    )
    assert (rec.project_id, rec.api_key_id) == (principal.project_id, principal.key_id)
    [day] = line_items(admin)[:1]
    paid = job.trained_tokens - 300
    assert day[f"{TINY}, training_tokens"] == (paid, paid * 3)
    assert day[f"{TINY}, free_training_tokens"] == (300, 0)
    assert cost(job.trained_tokens - 300, MINI_TRAINING) == paid * 3
    assert sum(container.usage.month_to_date(principal.org_id)) == paid * 3


def test_two_jobs_share_a_days_allowance_which_resets_the_next_utc_day(
    client: openai.OpenAI,
    admin: openai.OpenAI,
    container: Any,
    clock: Any,
    principal: Principal,
    train_id: str,
) -> None:
    first = create(client, train_id)
    run_worker(container)
    tokens = client.fine_tuning.jobs.retrieve(first.id).trained_tokens
    assert tokens
    allowance = tokens + tokens // 2
    container.settings.free_training_tokens_per_day = allowance  # applies at rating time
    clock.set(T0 + 3_600)
    second = create(client, train_id)
    run_worker(container)
    clock.set(T0 + DAY)  # the next UTC day
    third = create(client, train_id)
    run_worker(container)
    assert {client.fine_tuning.jobs.retrieve(j.id).trained_tokens for j in (second, third)} == {tokens}
    day1, day2 = line_items(admin)[:2]
    assert day1[f"{TINY}, free_training_tokens"] == (allowance, 0)
    assert day1[f"{TINY}, training_tokens"] == (2 * tokens - allowance, (2 * tokens - allowance) * 3)
    assert day2[f"{TINY}, free_training_tokens"] == (tokens, 0)
    assert day2[f"{TINY}, training_tokens"] == (0, 0)
    left = container.usage.allowance_today(principal.org_id, "mini")
    assert (left.used, left.left) == (tokens, allowance - tokens)


def test_a_job_failing_validation_bills_nothing(
    client: openai.OpenAI, container: Any, clock: Any, principal: Principal, tmp_path: Path
) -> None:
    fid = client.files.create(file=chat_file(tmp_path / "few.jsonl", 5).open("rb"), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model=TINY, training_file=fid)
    run_worker(container)
    assert client.fine_tuning.jobs.retrieve(job.id).status == "failed"
    assert training_records(container, principal.org_id) == []
    assert container.usage.month_to_date(principal.org_id) == (0, 0)


def test_a_cancelled_job_bills_what_it_trained_once(
    client: openai.OpenAI, container: Any, clock: Any, principal: Principal, train_id: str
) -> None:
    container.settings.train_step_delay_seconds = 0.3
    container.settings.free_training_tokens_per_day = 0
    job = create(client, train_id, epochs=5)
    worker = threading.Thread(target=run_worker, args=(container,))
    worker.start()

    def step() -> int:
        with container.db.session() as s:
            row = jobs_repo.get_any(s, job.id)
            return row.current_step if row else 0

    wait_for(lambda: step() >= 3, timeout=60, interval=0.1, message="timed out")
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    worker.join(60)
    assert not worker.is_alive()
    with container.db.session() as s:
        progress = repo.progress(s, job.id)
        assert progress is not None and progress.trained_tokens > 0
        trained = progress.trained_tokens
    [rec] = training_records(container, principal.org_id)
    assert rec.training_tokens == trained and rec.key == f"training:{job.id}"
    container.usage.settle(principal.org_id)  # the sweep finds nothing more to bill
    assert container.usage.settle_job(job.id) is False
    assert len(training_records(container, principal.org_id)) == 1
    assert sum(container.usage.month_to_date(principal.org_id)) == trained * 3


def test_the_spend_limit_stops_a_job_before_training(
    client: openai.OpenAI,
    admin: openai.OpenAI,
    container: Any,
    clock: Any,
    principal: Principal,
    train_id: str,
) -> None:
    container.settings.free_training_tokens_per_day = 0
    admin.admin.organization.spend_limit.update(currency="USD", interval="month", threshold_amount=0)
    job = create(client, train_id)
    run_worker(container)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "failed" and job.error is not None
    assert job.error.code == "spend_limit_exceeded" and "spend limit" in (job.error.message or "")
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert "Fine-tuning job started" not in messages and job.trained_tokens is None
    assert training_records(container, principal.org_id) == []

    assert principal.project_id
    admin.admin.organization.spend_limit.update(currency="USD", interval="month", threshold_amount=100_00)
    admin.admin.organization.projects.spend_limit.update(
        principal.project_id, currency="USD", interval="month", threshold_amount=0
    )
    blocked = create(client, train_id)
    run_worker(container)
    assert client.fine_tuning.jobs.retrieve(blocked.id).error.code == "spend_limit_exceeded"  # type: ignore[union-attr]

    admin.admin.organization.projects.spend_limit.delete(principal.project_id)
    container.settings.free_training_tokens_per_day = 1_000_000  # free training costs nothing: no limit binds
    admin.admin.organization.spend_limit.update(currency="USD", interval="month", threshold_amount=0)
    free = create(client, train_id)
    run_worker(container)
    assert client.fine_tuning.jobs.retrieve(free.id).status == "succeeded"


WORKER = """
import sys
from afinar.config import Settings
from afinar.services.container import Container
from afinar.worker.loop import Worker
c = Container(Settings())
Worker(c, name="doomed").run_once()
"""


def test_a_worker_killed_mid_job_and_resumed_bills_the_job_once(
    client: openai.OpenAI, container: Any, principal: Principal, train_id: str, settings: Any
) -> None:
    job = create(client, train_id, epochs=3)
    env = dict(
        os.environ,
        AFINAR_DATA_DIR=str(settings.data_dir),
        AFINAR_CATALOG_FILE=str(settings.catalog_file),
        AFINAR_LEASE_SECONDS="2",
        AFINAR_HEARTBEAT_SECONDS="0.5",
        AFINAR_CHECKPOINT_EVERY_STEPS="2",
        AFINAR_TRAIN_STEP_DELAY_SECONDS="0.3",
        AFINAR_EMBEDDED_WORKER="false",
    )
    doomed = subprocess.Popen([sys.executable, "-c", WORKER], env=env, start_new_session=True)
    try:

        def step() -> int:
            with container.db.session() as s:
                row = jobs_repo.get_any(s, job.id)
                return row.current_step if row else 0

        wait_for(lambda: step() >= 5, timeout=120, interval=0.1, message="timed out")
        with container.db.session() as s:
            progress = repo.progress(s, job.id)
            assert progress is not None and progress.step >= 5
    finally:
        os.killpg(doomed.pid, signal.SIGKILL)  # the worker and its training child, no handler runs
        doomed.wait()
    assert training_records(container, principal.org_id) == []
    time.sleep(2.5)  # the lease expires
    container.settings.checkpoint_every_steps = 2
    run_worker(container)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=1000)]
    assert any(m.startswith("Fine-tuning job resumed from step") for m in messages)
    [rec] = training_records(container, principal.org_id)
    assert rec.training_tokens == job.trained_tokens
    with container.db.session() as s:  # a replay of the success write bills nothing more
        row = jobs_repo.get_any(s, job.id)
        assert row is not None and container.usage.bill_training(s, row, row.trained_tokens or 0) is False
    reference = create(client, train_id, epochs=3)
    run_worker(container)
    assert client.fine_tuning.jobs.retrieve(reference.id).trained_tokens == job.trained_tokens


def test_a_model_the_price_book_cannot_price_fails_before_training(
    client: openai.OpenAI, container: Any, clock: Any, principal: Principal, train_id: str
) -> None:
    from afinar.billing.pricebook import PriceBook

    container.usage.pricebook = PriceBook({})  # an operator file that dropped the tier
    job = create(client, train_id)
    run_worker(container)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "failed" and job.error is not None
    assert (job.error.code, job.error.param) == ("price_not_found", "model")
    assert training_records(container, principal.org_id) == []

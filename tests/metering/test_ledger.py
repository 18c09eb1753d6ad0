"""The ledger and the usage service on SQLite and PostgreSQL: idempotent records, rating, limits."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from afinar.errors import QuotaExceeded
from afinar.services.orgs import Principal, authenticate
from afinar.services.usage_reports import UsageQuery
from afinar.store import usage as repo
from afinar.store.tables import Job, UsageRecord
from tests.support.clock import DAY, T0
from tests.support.tiny_model import TINY


def me(c: Any) -> Principal:
    return authenticate(c.db, "sk-test-key")


def make_job(c: Any, p: Principal, status: str, job_id: str) -> Job:
    job = Job(
        id=job_id,
        org_id=p.org_id,
        project_id=p.project_id,
        api_key_id=p.key_id,
        model=TINY,
        training_file="file-x",
        status=status,
        created_at=T0,
        finished_at=T0,
        seed=1,
        method={"type": "supervised"},
        requested_hyperparameters={},
        model_name=f"ft:{TINY}:default::x",
        result_files=[],
        current_step=0,
        lease_token=0,
        attempts=0,
    )
    with c.db.session() as s:
        s.add(job)
    return job


def records(c: Any) -> list[UsageRecord]:
    with c.db.session() as s:
        return repo.between(s, me(c).org_id, 0, 2**62)


def test_inference_record_is_written_once_per_completion_id(any_db: Any) -> None:
    c, p = any_db, me(any_db)
    assert c.usage.record_inference(p, "chatcmpl-1", TINY, TINY, 1000, 500) is True
    assert c.usage.record_inference(p, "chatcmpl-1", TINY, TINY, 1000, 500) is False  # a retry
    [rec] = records(c)
    assert (rec.kind, rec.input_tokens, rec.output_tokens, rec.num_requests) == ("inference", 1000, 500, 1)
    assert (rec.input_cost, rec.output_cost) == (300, 600)  # $0.30 and $1.20 per 1M on the mini tier
    assert (rec.project_id, rec.api_key_id, rec.occurred_at, rec.tier) == (p.project_id, p.key_id, T0, "mini")


def test_concurrent_writers_of_the_same_keys_bill_once(any_db: Any) -> None:
    c, p = any_db, me(any_db)
    wrote: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        for i in range(10):
            ok = c.usage.record_inference(p, f"chatcmpl-{i}", TINY, TINY, 10, 20)
            with lock:
                wrote.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(wrote) == 10 and len(records(c)) == 10


def test_fine_tuned_models_are_billed_at_their_base_prices(any_db: Any) -> None:
    c, p = any_db, me(any_db)
    c.usage.record_inference(p, "chatcmpl-ft", f"ft:{TINY}:default:s:abcdefgh", TINY, 1_000_000, 1_000_000)
    [rec] = records(c)
    assert rec.model.startswith("ft:") and rec.base_model == TINY
    assert rec.input_cost + rec.output_cost == 1_500_000


def test_cancelled_job_is_billed_once_for_what_it_trained_and_failed_jobs_never(any_db: Any) -> None:
    c, p = any_db, me(any_db)
    cancelled = make_job(c, p, "cancelled", "ftjob-cancelled")
    failed = make_job(c, p, "failed", "ftjob-failed")
    with c.db.session() as s:
        for job in (cancelled, failed):
            c.usage.note_progress(s, job, 3, 1_500)
            c.usage.note_progress(s, job, 4, 2_000)
    assert c.usage.settle_job(cancelled.id) is True
    assert c.usage.settle_job(cancelled.id) is False
    assert c.usage.settle_job(failed.id) is False
    c.usage.settle(p.org_id)
    [rec] = records(c)
    assert (rec.key, rec.training_tokens, rec.job_id, rec.occurred_at) == (
        "training:ftjob-cancelled",
        2_000,
        cancelled.id,
        T0,
    )


def test_month_to_date_rates_training_after_the_allowance(any_db: Any) -> None:
    c, p = any_db, me(any_db)  # 1,000 free training tokens a day
    for i, day in enumerate((0, 0, 1)):
        job = make_job(c, p, "succeeded", f"ftjob-{i}")
        with c.db.session() as s:
            c.usage.bill_training(s, job, 800, at=T0 + day * DAY + i)
    c.usage.record_inference(p, "chatcmpl-a", TINY, TINY, 10_000, 10_000)
    c.clock.advance(2 * DAY)
    training, inference = c.usage.month_to_date(p.org_id)
    assert training == 600 * 3  # day 1: 800 + 800 - 1000 paid; day 2: all free
    assert inference == 3_000 + 12_000
    assert c.usage.month_to_date(p.org_id, "proj_other") == (0, 0)
    c.clock.advance(10 * DAY)  # next month
    assert c.usage.month_to_date(p.org_id) == (0, 0)


def test_spend_limits_stop_chat_once_reached(any_db: Any) -> None:
    c, p = any_db, me(any_db)
    c.spend_limits.check_chat_allowed(p)  # no limit
    c.spend_limits.set_limit(p.org_id, 1)  # 1 cent
    c.spend_limits.check_chat_allowed(p)
    c.usage.record_inference(p, "chatcmpl-big", TINY, TINY, 0, 9_000)  # 10,800 µ$ > 1 cent
    with pytest.raises(QuotaExceeded) as err:
        c.spend_limits.check_chat_allowed(p)
    assert err.value.code == "insufficient_quota" and "organization" in err.value.message
    assert c.spend_limits.delete_limit(p.org_id) is True and c.spend_limits.delete_limit(p.org_id) is False
    c.spend_limits.check_chat_allowed(p)
    assert p.project_id is not None
    c.spend_limits.set_limit(p.org_id, 1, p.project_id)
    with pytest.raises(QuotaExceeded, match="project"):
        c.spend_limits.check_chat_allowed(p)
    other = Principal(p.org_id, p.org_slug, p.key_id, None)
    c.spend_limits.check_chat_allowed(other)  # the project's limit binds that project only


def test_limit_upsert_replaces(any_db: Any) -> None:
    c, p = any_db, me(any_db)
    for cents in (100, 250):
        state = c.spend_limits.set_limit(p.org_id, cents)
    assert state.threshold_cents == 250 and state.limit == 2_500_000 and not state.enforcing
    with c.db.session() as s:
        assert repo.get_limit(s, p.org_id, "organization") is not None


def test_costs_and_completions_on_this_database(any_db: Any) -> None:
    c, p = any_db, me(any_db)
    for i in range(5):
        c.usage.record_inference(p, f"chatcmpl-{i}", TINY, TINY, 100, 10)
        c.clock.advance(3_600)
    q = UsageQuery(start_time=T0 - 10 * 3_600, end_time=T0 + DAY, group_by=("model",))
    report = c.usage_reports.completions(p.org_id, q)
    [group] = report.buckets[0].groups
    assert group.key == (TINY,) and group.sums == {
        "input_tokens": 500,
        "output_tokens": 50,
        "num_model_requests": 5,
    }
    costs = c.usage_reports.costs(p.org_id, UsageQuery(start_time=T0 - 10 * 3_600, end_time=T0 + DAY))
    assert costs.buckets[0].groups[0].sums["amount"] == 5 * (30 + 12)


def test_usage_the_price_book_cannot_price_is_kept_at_zero_prices(any_db: Any) -> None:
    c, p = any_db, me(any_db)
    assert c.usage.record_inference(p, "chatcmpl-odd", "unpriced", "unpriced", 7, 9) is True
    [rec] = records(c)
    assert (rec.input_tokens, rec.output_tokens, rec.input_cost, rec.output_cost) == (7, 9, 0, 0)

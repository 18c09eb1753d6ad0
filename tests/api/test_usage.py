"""Usage, costs and spend limits through the SDK's admin client, checked against its own types."""

from __future__ import annotations

import time
from typing import Any

import openai
import pytest
from openai.types.admin.organization import (
    OrganizationSpendLimit,
    OrganizationSpendLimitDeleted,
    UsageCompletionsResponse,
    UsageCostsResponse,
)
from openai.types.admin.organization.projects import ProjectSpendLimit, ProjectSpendLimitDeleted

from afinar import ids
from afinar.services.orgs import Principal
from afinar.store import orgs as orgs_repo
from afinar.store.tables import ApiKey, Job, Project
from tests.support.billing import roomy_settings  # noqa: F401  (fixture: settings)
from tests.support.clock import DAY, DAY0, T0
from tests.support.tiny_model import TINY

FT = f"ft:{TINY}:default:shop:abcdefgh"


def second_key(c: Any, p: Principal) -> Principal:
    """Another project of the organisation, with its own key."""
    with c.db.session() as s:
        project = Project(id=ids.new_id("proj_"), org_id=p.org_id, name="research", created_at=T0)
        s.add(project)
        key = ApiKey(
            id=ids.new_id("key_"),
            org_id=p.org_id,
            project_id=project.id,
            name="r",
            key_hash=orgs_repo.hash_key("sk-research"),
            redacted="sk-res…arch",
            created_at=T0,
        )
        s.add(key)
    return Principal(p.org_id, p.org_slug, key.id, project.id)


def train(c: Any, p: Principal, job_id: str, tokens: int) -> None:
    job = Job(
        id=job_id,
        org_id=p.org_id,
        project_id=p.project_id,
        api_key_id=p.key_id,
        model=TINY,
        training_file="file-x",
        status="succeeded",
        created_at=int(c.clock()),
        seed=1,
        method={"type": "supervised"},
        requested_hyperparameters={},
        model_name=FT,
        result_files=[],
        current_step=0,
        lease_token=0,
        attempts=0,
    )
    with c.db.session() as s:
        s.add(job)
        s.flush()
        c.usage.bill_training(s, job, tokens)


@pytest.fixture
def usage(container: Any, clock: Any, principal: Principal) -> dict[str, Any]:
    """Two days of chat on two projects and one training job (1,000 free tokens a day)."""
    container.settings.free_training_tokens_per_day = 1_000
    other = second_key(container, principal)
    calls = [  # (offset seconds from T0, who, model, prompt, completion)
        (0, principal, TINY, 1_000, 100),
        (60, principal, FT, 2_000, 200),
        (3_700, other, TINY, 3_000, 300),
        (DAY + 5, principal, FT, 4_000, 400),
    ]
    for i, (offset, who, model, prompt, completion) in enumerate(calls):
        clock.set(T0 + offset)
        container.usage.record_inference(who, f"chatcmpl-{i}", model, TINY, prompt, completion)
    clock.set(T0 + 120)
    train(container, principal, "ftjob-a", 1_500)
    clock.set(T0 + DAY + 10)
    return {"other": other}


def raw_json(response: Any) -> dict[str, Any]:
    return response.http_response.json()  # type: ignore[no-any-return]


def test_completions_usage_matches_the_ledger_and_the_sdk_type(
    admin: openai.OpenAI, usage: dict[str, Any], principal: Principal
) -> None:
    raw = admin.admin.organization.usage.with_raw_response.completions(start_time=DAY0, limit=2)
    page = UsageCompletionsResponse.model_validate(raw_json(raw))  # strict: every field of the SDK's type
    assert page.object == "page" and not page.has_more and page.next_page is None
    assert [b.start_time for b in page.data] == [DAY0, DAY0 + DAY]
    assert all(b.end_time - b.start_time == DAY for b in page.data)
    day1, day2 = (b.results for b in page.data)
    assert len(day1) == 1 and day1[0].object == "organization.usage.completions.result"
    assert (day1[0].input_tokens, day1[0].output_tokens, day1[0].num_model_requests) == (6_000, 600, 3)
    assert day1[0].model is None and day1[0].project_id is None
    assert (day2[0].input_tokens, day2[0].num_model_requests) == (4_000, 1)

    grouped = admin.admin.organization.usage.completions(
        start_time=DAY0, end_time=DAY0 + DAY, group_by=["model", "project_id"]
    )
    rows = {(r.model, r.project_id): (r.input_tokens, r.output_tokens) for r in grouped.data[0].results}
    other = usage["other"].project_id
    assert rows == {
        (TINY, principal.project_id): (1_000, 100),
        (FT, principal.project_id): (2_000, 200),
        (TINY, other): (3_000, 300),
    }

    only = admin.admin.organization.usage.completions(
        start_time=DAY0, end_time=DAY0 + DAY, project_ids=[other], group_by=["api_key_id"]
    )
    [row] = only.data[0].results
    assert row.api_key_id == usage["other"].key_id and row.input_tokens == 3_000
    models = admin.admin.organization.usage.completions(start_time=DAY0, models=[FT], end_time=DAY0 + 2 * DAY)
    assert [b.results[0].input_tokens for b in models.data] == [2_000, 4_000]


def test_completions_hourly_buckets_page_with_next_page(admin: openai.OpenAI, usage: dict[str, Any]) -> None:
    first = admin.admin.organization.usage.completions(
        start_time=T0, end_time=T0 + 3 * 3_600, bucket_width="1h", limit=2
    )
    assert first.has_more and first.next_page and len(first.data) == 2
    assert [sum(r.num_model_requests for r in b.results) for b in first.data] == [2, 1]
    rest = admin.admin.organization.usage.completions(
        start_time=T0, end_time=T0 + 3 * 3_600, bucket_width="1h", limit=2, page=first.next_page
    )
    assert not rest.has_more and len(rest.data) == 1 and rest.data[0].results == []
    minute = admin.admin.organization.usage.completions(start_time=T0, end_time=T0 + 120, bucket_width="1m")
    assert [len(b.results) for b in minute.data] == [1, 1]


def test_costs_line_items_include_training_and_the_allowance(
    admin: openai.OpenAI, usage: dict[str, Any], container: Any, principal: Principal
) -> None:
    raw = admin.admin.organization.usage.with_raw_response.costs(start_time=DAY0, group_by=["line_item"])
    page = UsageCostsResponse.model_validate(raw_json(raw))
    day1 = {r.line_item: r for r in page.data[0].results}
    assert set(day1) == {
        f"{TINY}, input_tokens",
        f"{TINY}, output_tokens",
        f"{FT}, input_tokens",
        f"{FT}, output_tokens",
        f"{TINY}, training_tokens",
        f"{TINY}, free_training_tokens",
    }
    training, free = day1[f"{TINY}, training_tokens"], day1[f"{TINY}, free_training_tokens"]
    assert (training.quantity, training.quantity_unit, free.quantity) == (500, "tokens", 1_000)
    assert training.amount is not None and training.amount.value == pytest.approx(500 * 3 / 1e6)
    assert training.amount.currency == "usd" and free.amount is not None and free.amount.value == 0
    assert day1[f"{TINY}, input_tokens"].quantity == 4_000  # both projects
    assert day1[f"{FT}, output_tokens"].amount.value == pytest.approx(200 * 1.2 / 1e6)  # type: ignore[union-attr]

    totals = admin.admin.organization.usage.costs(start_time=DAY0)
    days = raw_json(admin.admin.organization.usage.with_raw_response.costs(start_time=DAY0))["data"]
    micros = [result["amount_micros"] for day in days for result in day["results"]]  # exact, additive field
    assert sum(micros) == sum(container.usage.month_to_date(principal.org_id))
    assert [len(b.results) for b in totals.data] == [1, 1]
    assert totals.data[0].results[0].line_item is None and totals.data[0].results[0].quantity is None

    by_project = admin.admin.organization.usage.costs(
        start_time=DAY0, group_by=["project_id", "api_key_id"], project_ids=[usage["other"].project_id]
    )
    [row] = by_project.data[0].results
    assert row.project_id == usage["other"].project_id and row.api_key_id == usage["other"].key_id
    assert row.amount is not None and row.amount.value == pytest.approx((3_000 * 0.3 + 300 * 1.2) / 1e6)
    items = admin.admin.organization.usage.costs(start_time=DAY0, line_items=[f"{TINY}, training_tokens"])
    assert items.data[0].results[0].amount.value == pytest.approx(0.0015)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"group_by": ["colour"]}, "group_by"),
        ({"bucket_width": "1h"}, "bucket_width"),
        ({"limit": 181}, "limit"),
        ({"end_time": DAY0 - 1}, "end_time"),
        ({"page": "page_nonsense"}, "page"),
    ],
)
def test_costs_request_problems_are_400(admin: openai.OpenAI, clock: Any, kwargs: Any, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        admin.admin.organization.usage.costs(start_time=DAY0, **kwargs)
    assert err.value.param == param


def test_usage_needs_a_valid_key(http: Any) -> None:
    bad = openai.OpenAI(
        base_url="http://testserver/v1",
        api_key="x",
        admin_api_key="sk-wrong",
        http_client=http,
        max_retries=0,
    )
    with pytest.raises(openai.AuthenticationError):
        bad.admin.organization.usage.completions(start_time=int(time.time()) - DAY)


def test_organization_spend_limit_roundtrip(admin: openai.OpenAI, clock: Any) -> None:
    limits = admin.admin.organization.spend_limit
    with pytest.raises(openai.NotFoundError):
        limits.retrieve()
    raw = limits.with_raw_response.update(currency="USD", interval="month", threshold_amount=2_500)
    made = OrganizationSpendLimit.model_validate(raw_json(raw))
    assert (made.object, made.threshold_amount, made.currency, made.interval) == (
        "organization.spend_limit",
        2_500,
        "USD",
        "month",
    )
    assert made.enforcement.status == "inactive"
    assert (
        limits.update(currency="USD", interval="month", threshold_amount=0).enforcement.status == "enforcing"
    )
    assert limits.retrieve().threshold_amount == 0
    gone = OrganizationSpendLimitDeleted.model_validate(raw_json(limits.with_raw_response.delete()))
    assert gone.deleted and gone.object == "organization.spend_limit.deleted"
    assert not limits.delete().deleted
    with pytest.raises(openai.BadRequestError) as err:
        limits.update(currency="EUR", interval="month", threshold_amount=1)  # type: ignore[arg-type]
    assert err.value.param == "currency"
    with pytest.raises(openai.BadRequestError) as err:
        limits.update(currency="USD", interval="month", threshold_amount=-5)
    assert err.value.param == "threshold_amount"


def test_project_spend_limit_roundtrip(admin: openai.OpenAI, clock: Any, principal: Principal) -> None:
    assert principal.project_id
    limits = admin.admin.organization.projects.spend_limit
    raw = limits.with_raw_response.update(
        principal.project_id, currency="USD", interval="month", threshold_amount=100
    )
    made = ProjectSpendLimit.model_validate(raw_json(raw))
    assert made.object == "project.spend_limit" and made.threshold_amount == 100
    assert limits.retrieve(principal.project_id).threshold_amount == 100
    gone = ProjectSpendLimitDeleted.model_validate(
        raw_json(limits.with_raw_response.delete(principal.project_id))
    )
    assert gone.deleted and gone.object == "project.spend_limit.deleted"
    with pytest.raises(openai.NotFoundError) as err:
        limits.retrieve("proj_nope")
    assert err.value.param == "project_id"


def test_summary_shows_allowance_left_and_month_to_date(
    http: Any, settings: Any, usage: dict[str, Any], admin: openai.OpenAI, clock: Any
) -> None:
    headers = {"Authorization": f"Bearer {settings.bootstrap_api_key}"}
    admin.admin.organization.spend_limit.update(currency="USD", interval="month", threshold_amount=1)
    clock.set(T0 + 600)  # back on day one: 1,000 free tokens used
    body = http.get("/v1/afinar/usage", headers=headers).json()
    assert body["object"] == "afinar.usage.summary"
    allowance = {t["tier"]: t for t in body["free_training_allowance"]["tiers"]}
    assert allowance["mini"] == {
        "tier": "mini",
        "tokens_per_day": 1_000,
        "used_tokens": 1_000,
        "remaining_tokens": 0,
    }
    assert allowance["flagship"]["remaining_tokens"] == 1_000
    assert body["free_training_allowance"]["day"] == "2026-11-25"
    assert body["free_training_allowance"]["resets_at"] == DAY0 + DAY
    mtd = body["month_to_date"]
    assert (
        mtd["training_micros"] == 1_500
        and mtd["amount_micros"] == mtd["training_micros"] + mtd["inference_micros"]
    )
    assert mtd["inference_micros"] == 300 + 120 + 600 + 240 + 900 + 360 + 1_200 + 480  # per record, half up
    [limit] = body["spend_limits"]  # 1 cent = 10,000 µ$
    assert (limit["scope"], limit["status"], limit["spent_micros"], limit["remaining_micros"]) == (
        "organization",
        "inactive",
        5_700,
        4_300,
    )
    clock.set(T0 + DAY)
    body = http.get("/v1/afinar/usage", headers=headers).json()
    assert {t["tier"]: t["remaining_tokens"] for t in body["free_training_allowance"]["tiers"]}[
        "mini"
    ] == 1_000

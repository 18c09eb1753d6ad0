"""Wire shapes of usage, costs, spend limits (OpenAI's admin API) and Afinar's usage summary,
and the spend limit's request body.

Money leaves the service as integer micro-dollars; here it becomes OpenAI's float dollars (costs)
and cents (spend limits). Every cost result also carries ``amount_micros``, the exact integer
(an additive field).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, model_validator

from afinar.billing.money import micros_to_dollars
from afinar.billing.periods import DAY, day_start
from afinar.errors import InvalidRequest
from afinar.services.spend_limits import LimitState
from afinar.services.usage_reports import COMPLETIONS_GROUPS, COSTS_GROUPS, Report, Summary


class SpendLimitUpdate(BaseModel):
    """``POST .../spend_limit``: ``{"currency": "USD", "interval": "month", "threshold_amount": cents}``."""

    currency: str
    interval: str
    threshold_amount: int  # cents

    @model_validator(mode="before")
    @classmethod
    def _check(cls, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("currency") != "USD":
            raise InvalidRequest("currency must be 'USD'.", param="currency")
        if body.get("interval") != "month":
            raise InvalidRequest("interval must be 'month'.", param="interval")
        cents = body.get("threshold_amount")
        if isinstance(cents, bool) or not isinstance(cents, int) or cents < 0:
            raise InvalidRequest(
                "threshold_amount must be a non-negative integer (cents).", param="threshold_amount"
            )
        return {"currency": "USD", "interval": "month", "threshold_amount": cents}


def _grouped(names: tuple[str, ...], key: tuple[Any, ...], every: tuple[str, ...]) -> dict[str, Any]:
    values = dict(zip(names, key, strict=True))
    return {name: values.get(name) for name in every}


def _amount(micros: int) -> dict[str, Any]:
    return {"value": micros_to_dollars(micros), "currency": "usd"}


def completions_page(report: Report) -> dict[str, Any]:
    data = []
    for bucket in report.buckets:
        results = []
        for group in bucket.groups:
            sums = group.sums
            results.append(
                {
                    "object": "organization.usage.completions.result",
                    "input_tokens": sums.get("input_tokens", 0),
                    "output_tokens": sums.get("output_tokens", 0),
                    "num_model_requests": sums.get("num_model_requests", 0),
                    "input_cached_tokens": 0,
                    "input_uncached_tokens": sums.get("input_tokens", 0),
                    "input_text_tokens": sums.get("input_tokens", 0),
                    "output_text_tokens": sums.get("output_tokens", 0),
                    "input_audio_tokens": 0,
                    "output_audio_tokens": 0,
                    **_grouped(report.group_by, group.key, COMPLETIONS_GROUPS),
                }
            )
        data.append(_bucket(bucket.window.start, bucket.window.end, results))
    return _page(data, report)


def costs_page(report: Report) -> dict[str, Any]:
    by_line = "line_item" in report.group_by
    data = []
    for bucket in report.buckets:
        results = []
        for group in bucket.groups:
            micros = group.sums.get("amount", 0)
            results.append(
                {
                    "object": "organization.costs.result",
                    "amount": _amount(micros),
                    "amount_micros": micros,
                    "quantity": group.sums.get("quantity", 0) if by_line else None,
                    "quantity_unit": "tokens" if by_line else None,
                    **_grouped(report.group_by, group.key, COSTS_GROUPS),
                }
            )
        data.append(_bucket(bucket.window.start, bucket.window.end, results))
    return _page(data, report)


def _bucket(start: int, end: int, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "bucket", "start_time": start, "end_time": end, "results": results}


def _page(data: list[dict[str, Any]], report: Report) -> dict[str, Any]:
    return {"object": "page", "data": data, "has_more": report.has_more, "next_page": report.next_page}


def spend_limit(state: LimitState, *, project: bool) -> dict[str, Any]:
    return {
        "object": "project.spend_limit" if project else "organization.spend_limit",
        "currency": "USD",
        "interval": "month",
        "threshold_amount": state.threshold_cents,
        "enforcement": {"status": "enforcing" if state.enforcing else "inactive"},
    }


def spend_limit_deleted(deleted: bool, *, project: bool) -> dict[str, Any]:
    kind = "project" if project else "organization"
    return {"object": f"{kind}.spend_limit.deleted", "deleted": deleted}


def summary(s: Summary) -> dict[str, Any]:
    total = s.training + s.inference
    return {
        "object": "afinar.usage.summary",
        "organization_id": s.org_id,
        "project_id": s.project_id,
        "as_of": s.now,
        "free_training_allowance": {
            "day": s.today.isoformat(),
            "resets_at": day_start(s.now) + DAY,
            "until": s.allowance_until.isoformat() if s.allowance_until else None,
            "tiers": [
                {
                    "tier": a.tier,
                    "tokens_per_day": a.tokens_per_day,
                    "used_tokens": a.used,
                    "remaining_tokens": a.left,
                }
                for a in s.allowances
            ],
        },
        "month_to_date": {
            "start_time": s.month_start,
            "end_time": s.now,
            "amount": _amount(total),
            "amount_micros": total,
            "training_micros": s.training,
            "inference_micros": s.inference,
            "project_amount_micros": s.project_spend,
        },
        "spend_limits": [
            {
                "scope": st.scope,
                "threshold_amount": st.threshold_cents,
                "currency": "USD",
                "interval": "month",
                "spent_micros": st.spent,
                "remaining_micros": st.remaining,
                "status": "enforcing" if st.enforcing else "inactive",
            }
            for st in s.limits
        ],
    }

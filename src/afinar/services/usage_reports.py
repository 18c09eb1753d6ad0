"""The usage answers: OpenAI's completions usage and costs reports, and Afinar's usage summary.

Everything is read from what ``services/usage.py`` meters and rates; buckets and group sums are
``billing/buckets.py``. The wire shapes are ``api/schemas/usage.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from afinar.billing.buckets import WIDTHS, Bucket, Grid, aggregate, grid
from afinar.billing.periods import month_start, utc_day
from afinar.config import Settings
from afinar.domain.principal import Principal
from afinar.errors import InvalidRequest
from afinar.services.spend_limits import LimitState, SpendLimits
from afinar.services.usage import AllowanceState, CostLine, UsageBilling
from afinar.store.tables import UsageRecord

COMPLETIONS_GROUPS = ("project_id", "user_id", "api_key_id", "model", "batch", "service_tier", "api_source")
COSTS_GROUPS = ("project_id", "user_id", "line_item", "api_key_id", "api_source")
COMPLETIONS_LIMITS = {"1d": (7, 31), "1h": (24, 168), "1m": (60, 1440)}  # (default, max) buckets
COSTS_LIMITS = (7, 180)


@dataclass(frozen=True)
class UsageQuery:
    start_time: int
    end_time: int | None = None
    bucket_width: str = "1d"
    group_by: tuple[str, ...] = ()
    limit: int | None = None
    page: str | None = None
    project_ids: tuple[str, ...] = ()
    api_key_ids: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    user_ids: tuple[str, ...] = ()
    line_items: tuple[str, ...] = ()
    batch: bool | None = None


@dataclass(frozen=True)
class Report:
    buckets: list[Bucket]
    group_by: tuple[str, ...]
    has_more: bool
    next_page: str | None


@dataclass(frozen=True)
class Summary:
    org_id: str
    project_id: str | None
    now: int
    today: date
    month_start: int
    allowances: list[AllowanceState]
    allowance_until: date | None
    training: int  # micro-dollars this UTC month, organisation-wide
    inference: int
    project_spend: int | None  # the caller's project, this UTC month
    limits: list[LimitState]


class UsageReports:
    def __init__(self, *, settings: Settings, usage: UsageBilling, spend_limits: SpendLimits) -> None:
        self.settings = settings
        self.usage = usage
        self.spend_limits = spend_limits

    def completions(self, org_id: str, q: UsageQuery) -> Report:
        _check_groups(q.group_by, COMPLETIONS_GROUPS)
        if q.bucket_width not in WIDTHS:
            raise InvalidRequest("bucket_width must be one of '1m', '1h', '1d'.", param="bucket_width")
        default, most = COMPLETIONS_LIMITS[q.bucket_width]
        g, end = self._grid(q, default, most)
        records = [r for r in self.usage.inference_records(org_id, q.start_time, end) if _keep(r, q)]

        def key(r: UsageRecord) -> tuple[Any, ...]:
            fields = {
                "project_id": r.project_id,
                "user_id": None,
                "api_key_id": r.api_key_id,
                "model": r.model,
                "batch": False,
                "service_tier": "default",
                "api_source": "unlabeled",
            }
            return tuple(fields[name] for name in q.group_by)

        buckets = aggregate(
            records,
            g.windows,
            start_time=q.start_time,
            end_time=end,
            at=lambda r: r.occurred_at,
            key=key,
            values=lambda r: {
                "input_tokens": r.input_tokens,
                "output_tokens": r.output_tokens,
                "num_model_requests": r.num_requests,
            },
        )
        return Report(buckets, q.group_by, g.has_more, g.next_page)

    def costs(self, org_id: str, q: UsageQuery) -> Report:
        _check_groups(q.group_by, COSTS_GROUPS)
        if q.bucket_width != "1d":
            raise InvalidRequest("bucket_width must be '1d'.", param="bucket_width")
        g, end = self._grid(q, *COSTS_LIMITS)
        lines = [line for line in self.usage.lines(org_id, q.start_time, end) if _keep_line(line, q)]

        def key(line: CostLine) -> tuple[Any, ...]:
            fields = {
                "project_id": line.project_id,
                "user_id": None,
                "line_item": line.line_item,
                "api_key_id": line.api_key_id,
                "api_source": "unlabeled",
            }
            return tuple(fields[name] for name in q.group_by)

        buckets = aggregate(
            lines,
            g.windows,
            start_time=q.start_time,
            end_time=end,
            at=lambda x: x.occurred_at,
            key=key,
            values=lambda x: {"amount": x.amount, "quantity": x.quantity},
        )
        return Report(buckets, q.group_by, g.has_more, g.next_page)

    def _grid(self, q: UsageQuery, default: int, most: int) -> tuple[Grid, int]:
        limit = default if q.limit is None else q.limit
        if not 1 <= limit <= most:
            raise InvalidRequest(f"limit must be between 1 and {most}.", param="limit")
        end = q.end_time if q.end_time is not None else self.usage.now() + 1
        return grid(q.start_time, end, q.bucket_width, limit, q.page), end

    def summary(self, principal: Principal) -> Summary:
        """The free training allowance left today and month-to-date spend (``GET /v1/afinar/usage``)."""
        usage = self.usage
        training, inference = usage.month_to_date(principal.org_id)
        project = (
            usage.month_to_date(principal.org_id, principal.project_id) if principal.project_id else None
        )
        now = usage.now()
        return Summary(
            org_id=principal.org_id,
            project_id=principal.project_id,
            now=now,
            today=utc_day(now),
            month_start=month_start(now),
            allowances=[usage.allowance_today(principal.org_id, tier) for tier in usage.tiers()],
            allowance_until=self.settings.free_allowance_until,
            training=training,
            inference=inference,
            project_spend=None if project is None else sum(project),
            limits=self.spend_limits.limit_states(principal.org_id, principal.project_id),
        )


def _check_groups(group_by: Iterable[str], allowed: tuple[str, ...]) -> None:
    for name in group_by:
        if name not in allowed:
            raise InvalidRequest(
                f"Invalid group_by value {name!r}; allowed: {', '.join(allowed)}.", param="group_by"
            )


def _keep(r: UsageRecord, q: UsageQuery) -> bool:
    return (
        (not q.project_ids or r.project_id in q.project_ids)
        and (not q.api_key_ids or r.api_key_id in q.api_key_ids)
        and (not q.models or r.model in q.models)
        and not q.user_ids  # no per-user attribution yet: a user filter matches nothing
        and q.batch is not True  # nothing is a batch request
    )


def _keep_line(line: CostLine, q: UsageQuery) -> bool:
    return (
        (not q.project_ids or line.project_id in q.project_ids)
        and (not q.api_key_ids or line.api_key_id in q.api_key_ids)
        and (not q.line_items or line.line_item in q.line_items)
    )

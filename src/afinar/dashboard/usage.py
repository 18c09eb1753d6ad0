"""The usage page's numbers: tokens and cost per day and per model, and today's free allowance.

Everything comes from the usage service (the metering ledger, rated by billing); nothing is
estimated here. ``usage_view`` returns None when this server has no metering.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from afinar.domain.principal import Principal
    from afinar.services.container import Container
    from afinar.services.usage_reports import UsageReports

log = logging.getLogger(__name__)
DAY = 86_400
DAYS = 14
PALETTE = ("#1f4fd1", "#c2410c", "#047857", "#7c3aed", "#b91c1c", "#0e7490", "#a16207", "#4b5563")


@dataclass(frozen=True)
class Series:
    """One model's values per day, with its colour in the charts."""

    model: str
    values: list[int]
    colour: str

    @property
    def total(self) -> int:
        return sum(self.values)


@dataclass(frozen=True)
class Chart:
    days: list[str]  # "MM-DD" labels, oldest first
    series: list[Series]

    @property
    def day_totals(self) -> list[int]:
        return [sum(s.values[i] for s in self.series) for i in range(len(self.days))]

    @property
    def peak(self) -> int:
        return max(self.day_totals, default=0) or 1

    @property
    def empty(self) -> bool:
        return not any(self.day_totals)


@dataclass(frozen=True)
class Allowance:
    tier: str
    per_day: int
    left: int


@dataclass(frozen=True)
class UsageView:
    tokens: Chart  # chat prompt + completion tokens, and training tokens, per model
    costs: Chart  # micro-dollars per model (training and chat)
    allowances: list[Allowance]
    month_training: int
    month_inference: int


def _chart(days: list[str], per_model: dict[str, list[int]]) -> Chart:
    models = sorted(per_model, key=lambda m: -sum(per_model[m]))
    return Chart(days, [Series(m, per_model[m], PALETTE[i % len(PALETTE)]) for i, m in enumerate(models)])


def _model_of(line_item: str) -> str:
    return line_item.rsplit(", ", 1)[0]


def usage_view(c: Container, principal: Principal) -> UsageView | None:
    service = _service(c)
    if service is None:
        return None
    from afinar.services.usage_reports import UsageQuery

    org = principal.org_id
    now = int(c.clock())
    start = now - now % DAY - (DAYS - 1) * DAY
    days = [datetime.fromtimestamp(start + i * DAY, UTC).strftime("%m-%d") for i in range(DAYS)]
    tokens: dict[str, list[int]] = defaultdict(lambda: [0] * DAYS)
    money: dict[str, list[int]] = defaultdict(lambda: [0] * DAYS)
    chat = service.completions(org, UsageQuery(start_time=start, group_by=("model",), limit=DAYS))
    for i, bucket in enumerate(chat.buckets[:DAYS]):
        for g in bucket.groups:
            tokens[str(g.key[0])][i] += g.sums.get("input_tokens", 0) + g.sums.get("output_tokens", 0)
    costs = service.costs(org, UsageQuery(start_time=start, group_by=("line_item",), limit=DAYS))
    for i, bucket in enumerate(costs.buckets[:DAYS]):
        for g in bucket.groups:
            item = str(g.key[0])
            money[_model_of(item)][i] += g.sums.get("amount", 0)
            if "training_tokens" in item:
                tokens[f"{_model_of(item)} (training)"][i] += g.sums.get("quantity", 0)
    summary = service.summary(principal)
    return UsageView(
        tokens=_chart(days, dict(tokens)),
        costs=_chart(days, dict(money)),
        allowances=[Allowance(a.tier, a.tokens_per_day, a.left) for a in summary.allowances],
        month_training=summary.training,
        month_inference=summary.inference,
    )


def _service(c: Container) -> UsageReports | None:
    try:
        return c.usage_reports
    except (AttributeError, ImportError):
        log.info("usage metering is not available on this server")
        return None

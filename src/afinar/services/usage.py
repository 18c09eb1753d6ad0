"""Usage and billing: meter training and chat, rate it, enforce spend limits, answer usage and costs.

Money is integer micro-dollars here; dollars and cents appear only in ``api/schemas/usage.py``.
The ledger (``metering``) holds usage; ``billing`` prices it. What is billed when:

- a job that succeeds: its ``trained_tokens``, in the transaction that marks it succeeded;
- a job that is cancelled: the tokens of the last training step it recorded (``settle``);
- a job that fails (validation, safety gate, training error): nothing;
- a chat completion: its prompt and completion tokens, once per completion id.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from afinar.billing.allowance import AllowancePolicy
from afinar.billing.buckets import WIDTHS, Bucket, Grid, aggregate, grid
from afinar.billing.money import cents_to_micros, format_usd, micros_to_dollars
from afinar.billing.periods import DAY, day_start, month_start, next_month_start, utc_day
from afinar.billing.pricebook import Price, PriceBook, PriceNotFound
from afinar.billing.rating import RatedTraining, TrainingItem, cost, rate_training, training_estimate
from afinar.domain.jobs import JobStatus
from afinar.errors import InvalidRequest, NotFound, QuotaExceeded
from afinar.metering import ledger
from afinar.store import jobs as jobs_repo
from afinar.store import usage as repo
from afinar.store.tables import Job, SpendLimit, UsageRecord

if TYPE_CHECKING:
    from afinar.services.container import Container
    from afinar.services.orgs import Principal

log = logging.getLogger("afinar.billing")

ORG_SCOPE = "organization"
SPEND_LIMIT_EXCEEDED = "spend_limit_exceeded"
COMPLETIONS_GROUPS = ("project_id", "user_id", "api_key_id", "model", "batch", "service_tier", "api_source")
COSTS_GROUPS = ("project_id", "user_id", "line_item", "api_key_id", "api_source")
COMPLETIONS_LIMITS = {"1d": (7, 31), "1h": (24, 168), "1m": (60, 1440)}  # (default, max) buckets
COSTS_LIMITS = (7, 180)


def project_scope(project_id: str) -> str:
    return f"project:{project_id}"


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
class CostLine:
    """One priced quantity of one ledger record (a record has one or two)."""

    occurred_at: int
    project_id: str | None
    api_key_id: str | None
    line_item: str
    quantity: int
    amount: int  # micro-dollars


@dataclass(frozen=True)
class Report:
    buckets: list[Bucket]
    group_by: tuple[str, ...]
    has_more: bool
    next_page: str | None


@dataclass(frozen=True)
class LimitState:
    scope: str  # "organization" or "project"
    threshold_cents: int
    spent: int  # micro-dollars this UTC month

    @property
    def limit(self) -> int:
        return cents_to_micros(self.threshold_cents)

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.spent)

    @property
    def enforcing(self) -> bool:
        return self.spent >= self.limit


@dataclass(frozen=True)
class TrainingQuote:
    """Integer micro-dollars; dollars only on the wire (``to_dict``)."""

    price_per_1m: int  # the base model's training price per 1M tokens
    list_price: int  # every billable token at that price
    to_pay: int  # once today's free training tokens are used
    free_left: int  # free training tokens left today for the model's tier
    free_applied: int  # of this job's tokens, how many the free allowance would cover

    def to_dict(self) -> dict[str, Any]:
        return {
            "currency": "usd",
            "training_price_per_1m_tokens": micros_to_dollars(self.price_per_1m),
            "list_price": micros_to_dollars(self.list_price),
            "free_training_tokens_left_today": self.free_left,
            "free_training_tokens_applied": self.free_applied,
            "amount": micros_to_dollars(self.to_pay),
        }


@dataclass(frozen=True)
class AllowanceState:
    tier: str
    day: date
    tokens_per_day: int
    used: int

    @property
    def left(self) -> int:
        return max(0, self.tokens_per_day - self.used)


def training_lines(rec: UsageRecord, rated: RatedTraining) -> list[CostLine]:
    lines = [
        CostLine(
            rec.occurred_at,
            rec.project_id,
            rec.api_key_id,
            f"{rec.base_model}, training_tokens",
            rated.paid_tokens,
            rated.cost,
        )
    ]
    if rated.free_tokens:
        lines.append(
            CostLine(
                rec.occurred_at,
                rec.project_id,
                rec.api_key_id,
                f"{rec.base_model}, free_training_tokens",
                rated.free_tokens,
                0,
            )
        )
    return lines


def inference_lines(rec: UsageRecord) -> list[CostLine]:
    return [
        CostLine(
            rec.occurred_at,
            rec.project_id,
            rec.api_key_id,
            f"{rec.model}, input_tokens",
            rec.input_tokens,
            rec.input_cost,
        ),
        CostLine(
            rec.occurred_at,
            rec.project_id,
            rec.api_key_id,
            f"{rec.model}, output_tokens",
            rec.output_tokens,
            rec.output_cost,
        ),
    ]


class UsageService:
    def __init__(self, c: Container) -> None:
        self.c = c

    # --- prices and the clock -----------------------------------------------------------------

    @cached_property
    def pricebook(self) -> PriceBook:
        return PriceBook.load(self.c.settings.pricebook_file)

    @property
    def allowance(self) -> AllowancePolicy:
        s = self.c.settings
        return AllowancePolicy(s.free_training_tokens_per_day, s.free_allowance_until, self.pricebook)

    def now(self) -> int:
        return int(self.c.clock())

    def training_quote(self, org_id: str, base_model: str, tokens: int) -> TrainingQuote:
        """What training ``tokens`` on ``base_model`` would cost if the job ended now."""
        tier, price = self.price_of(base_model)
        free_left = self.allowance_today(org_id, tier).left
        return TrainingQuote(
            price_per_1m=price.training_per_1m,
            list_price=cost(tokens, price.training_per_1m),
            to_pay=training_estimate(tokens, price.training_per_1m, free_left),
            free_left=free_left,
            free_applied=min(tokens, max(0, free_left)),
        )

    def price_of(self, base_model: str) -> tuple[str, Price]:
        """(tier, prices) of a base model; fine-tuned models are billed at their base's prices."""
        entry = self.c.catalog.get(base_model)
        tier = entry.tier if entry is not None else ""
        return tier, self.pricebook.price(base_model, tier)

    def _price_for_record(self, base_model: str) -> tuple[str, Price]:
        """Usage that happened is recorded even when the price book cannot price it (edited since the
        job was validated): its tokens are kept, at zero prices, and the operator is told."""
        try:
            return self.price_of(base_model)
        except PriceNotFound as exc:
            log.error("metering %s at zero prices: %s", base_model, exc.message)
            entry = self.c.catalog.get(base_model)
            return (entry.tier if entry is not None else ""), Price(0, 0, 0)

    # --- metering -----------------------------------------------------------------------------

    def note_progress(self, s: Session, job: Job, step: int, trained_tokens: int) -> None:
        ledger.note_progress(s, job.id, job.org_id, step=step, trained_tokens=trained_tokens, at=self.now())

    def bill_training(self, s: Session, job: Job, tokens: int, at: int | None = None) -> bool:
        """Inside the caller's transaction (the one that ends the job); idempotent by job id."""
        tier, price = self._price_for_record(job.model)
        who = ledger.Attribution(job.org_id, job.project_id, job.api_key_id)
        return ledger.record_training(
            s,
            who,
            job_id=job.id,
            base_model=job.model,
            tier=tier,
            price=price,
            tokens=tokens,
            at=self.now() if at is None else at,
        )

    def settle_job(self, job_id: str) -> bool:
        """Bill a cancelled job for what it trained, once. True when this call wrote the record."""
        with self.c.db.session() as s:
            job = jobs_repo.get_any(s, job_id)
            if job is None or job.status != JobStatus.CANCELLED:
                return False
            progress = repo.progress(s, job_id)
            if progress is None or progress.trained_tokens <= 0:
                return False
            return self.bill_training(s, job, progress.trained_tokens, job.finished_at or self.now())

    def settle(self, org_id: str) -> None:
        """Bill every cancelled job of the organisation not billed yet (a worker that died, a paused job)."""
        with self.c.db.session() as s:
            for job, progress in repo.unbilled_jobs(s, org_id, JobStatus.CANCELLED):
                self.bill_training(s, job, progress.trained_tokens, job.finished_at or self.now())

    def record_inference(
        self,
        principal: Principal,
        completion_id: str,
        model_name: str,
        base_id: str,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> bool:
        tier, price = self._price_for_record(base_id)
        who = ledger.Attribution(principal.org_id, principal.project_id, principal.key_id)
        with self.c.db.session() as s:
            return ledger.record_inference(
                s,
                who,
                completion_id=completion_id,
                model=model_name,
                base_model=base_id,
                tier=tier,
                price=price,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                at=self.now(),
            )

    # --- rating -------------------------------------------------------------------------------

    def _rated_training(
        self, s: Session, org_id: str, start: int, end: int
    ) -> list[tuple[UsageRecord, RatedTraining]]:
        """Training records in ``[start, end)``, rated with every record of the UTC days they touch."""
        lo, hi = day_start(start), day_start(end - 1) + DAY
        records = repo.between(s, org_id, lo, hi, kind="training")
        items = [
            TrainingItem(r.key, r.org_id, r.tier, r.occurred_at, r.training_tokens, r.training_per_1m)
            for r in records
        ]
        rated = rate_training(items, self.allowance)
        return [(r, rated[r.key]) for r in records if start <= r.occurred_at < end]

    def lines(self, org_id: str, start: int, end: int) -> list[CostLine]:
        self.settle(org_id)
        with self.c.db.session() as s:
            out: list[CostLine] = []
            for rec, rated in self._rated_training(s, org_id, start, end):
                out += training_lines(rec, rated)
            for rec in repo.between(s, org_id, start, end, kind="inference"):
                out += inference_lines(rec)
        return out

    def month_to_date(self, org_id: str, project_id: str | None = None) -> tuple[int, int]:
        """(training, inference) micro-dollars this UTC month, for the organisation or one project."""
        self.settle(org_id)
        now = self.now()
        start, end = month_start(now), next_month_start(now)
        with self.c.db.session() as s:
            training = sum(
                rated.cost
                for rec, rated in self._rated_training(s, org_id, start, end)
                if project_id is None or rec.project_id == project_id
            )
            inference = repo.inference_cost(s, org_id, start, end, project_id)
        return training, inference

    def allowance_today(self, org_id: str, tier: str) -> AllowanceState:
        self.settle(org_id)
        now = self.now()
        today = utc_day(now)
        with self.c.db.session() as s:
            rated = self._rated_training(s, org_id, day_start(now), day_start(now) + DAY)
        used = sum(r.free_tokens for rec, r in rated if rec.tier == tier)
        return AllowanceState(tier, today, self.allowance(tier, today), used)

    # --- spend limits -------------------------------------------------------------------------

    def _limits(self, org_id: str, project_id: str | None) -> list[SpendLimit]:
        scopes = [ORG_SCOPE] + ([project_scope(project_id)] if project_id else [])
        with self.c.db.session() as s:
            return [row for scope in scopes if (row := repo.get_limit(s, org_id, scope)) is not None]

    def limit_states(self, org_id: str, project_id: str | None) -> list[LimitState]:
        states = []
        for row in self._limits(org_id, project_id):
            scoped = None if row.scope == ORG_SCOPE else row.project_id
            spent = sum(self.month_to_date(org_id, scoped))
            scope = "organization" if scoped is None else "project"
            states.append(LimitState(scope, row.threshold_cents, spent))
        return states

    def check_chat_allowed(self, principal: Principal) -> None:
        """Raise ``QuotaExceeded`` (429 ``insufficient_quota``) once a monthly hard limit is reached."""
        for state in self.limit_states(principal.org_id, principal.project_id):
            if state.enforcing:
                raise QuotaExceeded(
                    f"You exceeded your {state.scope}'s monthly spend limit of {format_usd(state.limit)} "
                    f"(spent this month: {format_usd(state.spent)}). Raise or remove the limit to continue.",
                )

    def job_spend_error(self, job: Job, tokens: int) -> dict[str, Any] | None:
        """The job's failure when training ``tokens`` would cost more than what its limits leave
        (or when the price book cannot price its model: better before training than after)."""
        try:
            tier, price = self.price_of(job.model)
        except PriceNotFound as exc:
            return {"code": exc.code, "message": exc.message, "param": "model"}
        states = self.limit_states(job.org_id, job.project_id)
        if not states:
            return None
        free_left = self.allowance_today(job.org_id, tier).left
        estimate = training_estimate(tokens, price.training_per_1m, free_left)
        for state in states:
            if estimate > state.remaining:
                return {
                    "code": SPEND_LIMIT_EXCEEDED,
                    "param": None,
                    "message": (
                        f"This job would train about {tokens} tokens and cost about {format_usd(estimate)}, "
                        f"more than what is left of the {state.scope}'s monthly spend limit "
                        f"({format_usd(state.remaining)} of {format_usd(state.limit)}). "
                        "Raise the limit, or train fewer tokens or epochs."
                    ),
                }
        return None

    def get_limit(self, org_id: str, project_id: str | None = None) -> LimitState:
        scope = ORG_SCOPE if project_id is None else project_scope(self._project(org_id, project_id))
        with self.c.db.session() as s:
            row = repo.get_limit(s, org_id, scope)
        if row is None:
            what = "organization" if project_id is None else f"project {project_id}"
            raise NotFound(f"No spend limit is set for the {what}.")
        spent = sum(self.month_to_date(org_id, project_id))
        return LimitState("organization" if project_id is None else "project", row.threshold_cents, spent)

    def set_limit(self, org_id: str, body: dict[str, Any], project_id: str | None = None) -> LimitState:
        scope = ORG_SCOPE if project_id is None else project_scope(self._project(org_id, project_id))
        if body.get("currency") != "USD":
            raise InvalidRequest("currency must be 'USD'.", param="currency")
        if body.get("interval") != "month":
            raise InvalidRequest("interval must be 'month'.", param="interval")
        cents = body.get("threshold_amount")
        if isinstance(cents, bool) or not isinstance(cents, int) or cents < 0:
            raise InvalidRequest(
                "threshold_amount must be a non-negative integer (cents).", param="threshold_amount"
            )
        with self.c.db.session() as s:
            repo.put_limit(s, org_id, scope, project_id, cents, self.now())
        return self.get_limit(org_id, project_id)

    def delete_limit(self, org_id: str, project_id: str | None = None) -> bool:
        scope = ORG_SCOPE if project_id is None else project_scope(self._project(org_id, project_id))
        with self.c.db.session() as s:
            return repo.delete_limit(s, org_id, scope)

    def _project(self, org_id: str, project_id: str) -> str:
        with self.c.db.session() as s:
            row = repo.project(s, org_id, project_id)
        if row is None:
            raise NotFound(f"No such project: {project_id}", param="project_id")
        return project_id

    # --- the usage and costs answers ----------------------------------------------------------

    def completions(self, org_id: str, q: UsageQuery) -> Report:
        _check_groups(q.group_by, COMPLETIONS_GROUPS)
        if q.bucket_width not in WIDTHS:
            raise InvalidRequest("bucket_width must be one of '1m', '1h', '1d'.", param="bucket_width")
        default, most = COMPLETIONS_LIMITS[q.bucket_width]
        g, end = self._grid(q, default, most)
        self.settle(org_id)
        with self.c.db.session() as s:
            records = [r for r in repo.between(s, org_id, q.start_time, end, kind="inference") if _keep(r, q)]

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
        lines = [line for line in self.lines(org_id, q.start_time, end) if _keep_line(line, q)]

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
        end = q.end_time if q.end_time is not None else self.now() + 1
        return grid(q.start_time, end, q.bucket_width, limit, q.page), end

    # --- the additive summary -----------------------------------------------------------------

    def tiers(self) -> list[str]:
        entries = [self.c.catalog.get(i) for i in self.c.catalog.ids()]
        return sorted({*self.pricebook.tiers, *(e.tier for e in entries if e is not None)})

    def summary(self, principal: Principal) -> Summary:
        training, inference = self.month_to_date(principal.org_id)
        project = self.month_to_date(principal.org_id, principal.project_id) if principal.project_id else None
        now = self.now()
        return Summary(
            org_id=principal.org_id,
            project_id=principal.project_id,
            now=now,
            today=utc_day(now),
            month_start=month_start(now),
            allowances=[self.allowance_today(principal.org_id, tier) for tier in self.tiers()],
            allowance_until=self.c.settings.free_allowance_until,
            training=training,
            inference=inference,
            project_spend=None if project is None else sum(project),
            limits=self.limit_states(principal.org_id, principal.project_id),
        )


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

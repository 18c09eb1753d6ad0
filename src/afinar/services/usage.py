"""Usage billing: meter training and chat into the ledger, price it, rate it, quote training.

Money is integer micro-dollars here; dollars and cents appear only in ``api/schemas/usage.py``.
The ledger (``metering``) holds usage; ``billing`` prices it. What is billed when:

- a job that succeeds: its ``trained_tokens``, in the transaction that marks it succeeded;
- a job that is cancelled: the tokens of the last training step it recorded (``settle``);
- a job that fails (validation, safety gate, training error): nothing;
- a chat completion: its prompt and completion tokens, once per completion id.

Spend limits are ``services/spend_limits.py``; the usage and costs reports
``services/usage_reports.py``. Both read what this service meters and rates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from afinar.billing.allowance import AllowancePolicy
from afinar.billing.money import micros_to_dollars
from afinar.billing.periods import DAY, day_start, month_start, next_month_start, utc_day
from afinar.billing.pricebook import Price, PriceBook, PriceNotFound
from afinar.billing.rating import RatedTraining, TrainingItem, cost, rate_training, training_estimate
from afinar.catalog.registry import Catalog
from afinar.config import Settings
from afinar.domain.jobs import JobStatus
from afinar.domain.principal import Principal
from afinar.metering import ledger
from afinar.store import jobs as jobs_repo
from afinar.store import usage as repo
from afinar.store.db import Database
from afinar.store.tables import Job, UsageRecord

if TYPE_CHECKING:
    from afinar.store.db import Session

log = logging.getLogger("afinar.billing")


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
class TrainingQuote:
    """Integer micro-dollars; dollars only on the wire (``to_dict``)."""

    price_per_1m: int  # the base model's training price per 1M tokens
    list_price: int  # every billable token at that price
    to_pay: int  # once today's free training tokens are used
    free_left: int  # free training tokens left today for the model's tier
    free_applied: int  # of this job's tokens, how many the free allowance would cover

    def to_dict(self) -> dict[str, object]:
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


class UsageBilling:
    """``settings`` is read on every call (its free allowance may change while the server runs)."""

    def __init__(self, *, db: Database, settings: Settings, catalog: Catalog, pricebook: PriceBook) -> None:
        self.db = db
        self.settings = settings
        self.catalog = catalog
        self.pricebook = pricebook

    # --- prices and the clock -----------------------------------------------------------------

    @property
    def allowance(self) -> AllowancePolicy:
        s = self.settings
        return AllowancePolicy(s.free_training_tokens_per_day, s.free_allowance_until, self.pricebook)

    def now(self) -> int:
        return int(self.db.now())

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
        entry = self.catalog.get(base_model)
        tier = entry.tier if entry is not None else ""
        return tier, self.pricebook.price(base_model, tier)

    def _price_for_record(self, base_model: str) -> tuple[str, Price]:
        """Usage that happened is recorded even when the price book cannot price it (edited since the
        job was validated): its tokens are kept, at zero prices, and the operator is told."""
        try:
            return self.price_of(base_model)
        except PriceNotFound as exc:
            log.error("metering %s at zero prices: %s", base_model, exc.message)
            entry = self.catalog.get(base_model)
            return (entry.tier if entry is not None else ""), Price(0, 0, 0)

    def tiers(self) -> list[str]:
        entries = [self.catalog.get(i) for i in self.catalog.ids()]
        return sorted({*self.pricebook.tiers, *(e.tier for e in entries if e is not None)})

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
        with self.db.session() as s:
            job = jobs_repo.get_any(s, job_id)
            if job is None or job.status != JobStatus.CANCELLED:
                return False
            progress = repo.progress(s, job_id)
            if progress is None or progress.trained_tokens <= 0:
                return False
            return self.bill_training(s, job, progress.trained_tokens, job.finished_at or self.now())

    def settle(self, org_id: str) -> None:
        """Bill every cancelled job of the organisation not billed yet (a worker that died, a paused job)."""
        with self.db.session() as s:
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
        """Meter one chat completion (all its choices; streamed or not) at ``base_id``'s prices.

        Idempotent by ``completion_id``: True when this call wrote the record, False when it existed.
        """
        tier, price = self._price_for_record(base_id)
        who = ledger.Attribution(principal.org_id, principal.project_id, principal.key_id)
        with self.db.session() as s:
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
        with self.db.session() as s:
            out: list[CostLine] = []
            for rec, rated in self._rated_training(s, org_id, start, end):
                out += training_lines(rec, rated)
            for rec in repo.between(s, org_id, start, end, kind="inference"):
                out += inference_lines(rec)
        return out

    def inference_records(self, org_id: str, start: int, end: int) -> list[UsageRecord]:
        """The organisation's chat completions metered in ``[start, end)``, oldest first."""
        self.settle(org_id)
        with self.db.session() as s:
            return repo.between(s, org_id, start, end, kind="inference")

    def month_to_date(self, org_id: str, project_id: str | None = None) -> tuple[int, int]:
        """(training, inference) micro-dollars this UTC month, for the organisation or one project."""
        self.settle(org_id)
        now = self.now()
        start, end = month_start(now), next_month_start(now)
        with self.db.session() as s:
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
        with self.db.session() as s:
            rated = self._rated_training(s, org_id, day_start(now), day_start(now) + DAY)
        used = sum(r.free_tokens for rec, r in rated if rec.tier == tier)
        return AllowanceState(tier, today, self.allowance(tier, today), used)

"""Spend limits: an organisation's and its projects' monthly hard limits (USD, UTC month).

A limit reached stops chat completions (429 ``insufficient_quota``) and fails a new fine-tuning
job whose estimated cost is more than what the limit leaves (``spend_limit_exceeded``). The
threshold is in cents on the wire and in the table; spend is integer micro-dollars.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from afinar.billing.money import cents_to_micros, format_usd
from afinar.billing.pricebook import PriceNotFound
from afinar.billing.rating import training_estimate
from afinar.domain.principal import Principal
from afinar.errors import NotFound, QuotaExceeded
from afinar.services.usage import UsageBilling
from afinar.store import usage as repo
from afinar.store.db import Database
from afinar.store.tables import Job, SpendLimit

ORG_SCOPE = "organization"
SPEND_LIMIT_EXCEEDED = "spend_limit_exceeded"


def project_scope(project_id: str) -> str:
    return f"project:{project_id}"


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


class SpendLimits:
    def __init__(self, *, db: Database, usage: UsageBilling) -> None:
        self.db = db
        self.usage = usage

    def _limits(self, org_id: str, project_id: str | None) -> list[SpendLimit]:
        scopes = [ORG_SCOPE] + ([project_scope(project_id)] if project_id else [])
        with self.db.session() as s:
            return [row for scope in scopes if (row := repo.get_limit(s, org_id, scope)) is not None]

    def limit_states(self, org_id: str, project_id: str | None) -> list[LimitState]:
        states = []
        for row in self._limits(org_id, project_id):
            scoped = None if row.scope == ORG_SCOPE else row.project_id
            spent = sum(self.usage.month_to_date(org_id, scoped))
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
            tier, price = self.usage.price_of(job.model)
        except PriceNotFound as exc:
            return {"code": exc.code, "message": exc.message, "param": "model"}
        states = self.limit_states(job.org_id, job.project_id)
        if not states:
            return None
        free_left = self.usage.allowance_today(job.org_id, tier).left
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
        scope = ORG_SCOPE if project_id is None else project_scope(self.project(org_id, project_id))
        with self.db.session() as s:
            row = repo.get_limit(s, org_id, scope)
        if row is None:
            what = "organization" if project_id is None else f"project {project_id}"
            raise NotFound(f"No spend limit is set for the {what}.")
        spent = sum(self.usage.month_to_date(org_id, project_id))
        return LimitState("organization" if project_id is None else "project", row.threshold_cents, spent)

    def set_limit(self, org_id: str, threshold_cents: int, project_id: str | None = None) -> LimitState:
        """Create or replace the monthly limit (USD cents) of the organisation or one project."""
        scope = ORG_SCOPE if project_id is None else project_scope(self.project(org_id, project_id))
        with self.db.session() as s:
            repo.put_limit(s, org_id, scope, project_id, threshold_cents, int(self.db.now()))
        return self.get_limit(org_id, project_id)

    def delete_limit(self, org_id: str, project_id: str | None = None) -> bool:
        scope = ORG_SCOPE if project_id is None else project_scope(self.project(org_id, project_id))
        with self.db.session() as s:
            return repo.delete_limit(s, org_id, scope)

    def project(self, org_id: str, project_id: str) -> str:
        """``project_id``, when it names a project of the organisation (else 404)."""
        with self.db.session() as s:
            row = repo.project(s, org_id, project_id)
        if row is None:
            raise NotFound(f"No such project: {project_id}", param="project_id")
        return project_id

"""Every row an organisation owns, kind by kind, as plain dicts (``afinar admin export``).

Columns that are secrets or server internals are left out: key hashes, storage keys and paths,
lease bookkeeping, the wrapped data key (``org_keys`` is never exported).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from afinar.store.tables import (
    ApiKey,
    AuditLog,
    Base,
    Checkpoint,
    Eval,
    EvalGate,
    EvalOutputItem,
    EvalRun,
    File,
    FineTunedModel,
    Job,
    JobEvent,
    OrgUser,
    Project,
    ProjectMember,
    ServiceAccount,
    SpendLimit,
    StoredResponse,
    TrainingProgress,
    UsageRecord,
)

LEASE = ("lease_owner", "lease_token", "lease_expires_at")


@dataclass(frozen=True)
class Kind:
    name: str  # the archive member is <name>.jsonl
    table: type[Base]
    omit: tuple[str, ...] = ()


KINDS: tuple[Kind, ...] = (
    Kind("projects", Project),
    Kind("api_keys", ApiKey, ("key_hash",)),
    Kind("users", OrgUser),
    Kind("project_members", ProjectMember),
    Kind("service_accounts", ServiceAccount),
    Kind("files", File, ("blob_key",)),
    Kind("jobs", Job, ("resume_checkpoint", "attempts", *LEASE)),
    Kind("events", JobEvent),
    Kind("checkpoints", Checkpoint, ("path",)),
    Kind("models", FineTunedModel, ("adapter_path",)),
    Kind("usage", UsageRecord),
    Kind("training_progress", TrainingProgress),
    Kind("spend_limits", SpendLimit),
    Kind("evals", Eval),
    Kind("eval_runs", EvalRun, LEASE),
    Kind("eval_output_items", EvalOutputItem),
    Kind("eval_gates", EvalGate),
    Kind("responses", StoredResponse),
    Kind("audit_logs", AuditLog),
)


def as_dict(row: Base, omit: tuple[str, ...] = ("seq",)) -> dict[str, Any]:
    """The row's columns by their database names (``metadata``, not ``job_metadata``)."""
    out: dict[str, Any] = {}
    for attr in inspect(type(row)).column_attrs:
        name = attr.columns[0].name
        if attr.key not in omit and name not in omit:
            out[name] = getattr(row, attr.key)
    return out


def rows(s: Session, kind: Kind, org_id: str) -> Iterator[dict[str, Any]]:
    """Every row of ``kind`` owned by the organisation, oldest first, streamed."""
    table: Any = kind.table
    mapper = inspect(table)
    order = table.seq if "seq" in mapper.columns else mapper.primary_key[0]
    stmt = select(table).where(table.org_id == org_id).order_by(order).execution_options(yield_per=500)
    for row in s.scalars(stmt):
        yield as_dict(row, ("seq", *kind.omit))

"""SQLAlchemy tables. Every row belongs to an organisation; ``seq`` gives a stable creation order."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SeqType = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Organization(Base):
    __tablename__ = "organizations"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(256))
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[int] = mapped_column(Integer)
    # Settings (GET/POST /v1/afinar/organization/settings; services/org_settings.py)
    runtime_moderation: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Files older than this many days become tombstones (migration 0008_retention; services/retention.py):
    # None follows AFINAR_FILE_RETENTION_DAYS (unset: keep forever), 0 keeps forever.
    file_retention_days: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Project(Base):
    __tablename__ = "projects"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[int] = mapped_column(Integer)
    archived_at: Mapped[int | None] = mapped_column(Integer, nullable=True)


class ApiKey(Base):
    __tablename__ = "api_keys"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    project_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    name: Mapped[str] = mapped_column(String(256), default="")
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    redacted: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[int | None] = mapped_column(Integer, nullable=True)
    revoked_at: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Administration (migration 0005_admin): ``kind`` is admin | project; ``role`` restricts the key
    # (reader) below its owner's role; the owner is a user or a service account (docs/admin.md).
    kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    owner_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    owner_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)


class File(Base):
    __tablename__ = "files"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    project_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    filename: Mapped[str] = mapped_column(String(512))
    purpose: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    blob_key: Mapped[str] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(32), default="processed")
    status_details: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # A deleted file is a content-free tombstone (migration 0008_retention): the blob is gone, the row
    # keeps id, bytes, purpose and created_at for billing/history; every read path skips it.
    deleted_at: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Job(Base):
    __tablename__ = "jobs"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    project_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    api_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model: Mapped[str] = mapped_column(String(256))
    training_file: Mapped[str] = mapped_column(String(64))
    validation_file: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[int | None] = mapped_column(Integer, nullable=True)
    finished_at: Mapped[int | None] = mapped_column(Integer, nullable=True)
    suffix: Mapped[str | None] = mapped_column(String(64), nullable=True)
    seed: Mapped[int] = mapped_column(BigInteger)
    method: Mapped[dict[str, Any]] = mapped_column(JSON)
    requested_hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    resolved_hyperparameters: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    job_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    integrations: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    model_name: Mapped[str] = mapped_column(String(512))  # the ft: name, public once succeeded
    fine_tuned_model: Mapped[str | None] = mapped_column(String(512), nullable=True)
    trained_tokens: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    estimated_finish: Mapped[int | None] = mapped_column(Integer, nullable=True)
    result_files: Mapped[list[Any]] = mapped_column(JSON, default=list)
    total_steps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    current_step: Mapped[int] = mapped_column(Integer, default=0)
    resume_checkpoint: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Queue: a claim takes a lease; every worker write is fenced by lease_token.
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_token: Mapped[int] = mapped_column(BigInteger, default=0)
    lease_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # What the job waits for when no live worker can train it (migration 0010_workers): set once,
    # with a "waiting_for_worker" event, cleared by the next claim (docs/architecture.md, "Devices").
    waiting_for: Mapped[str | None] = mapped_column(String(256), nullable=True)
    # The job's quantisation (migration 0011_job_quantization): "nf4" for QLoRA; NULL is "none".
    quantization: Mapped[str | None] = mapped_column(String(16), nullable=True)


Index("ix_jobs_org_seq", Job.org_id, Job.seq)


class WorkerRecord(Base):
    """A worker process as it advertises itself (migration 0010_workers; services/workers.py):
    its lanes, its devices, and a heartbeat. A stale row is shown as such and blocks nothing."""

    __tablename__ = "workers"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(128), unique=True)  # the worker's name, its leases' owner prefix
    host: Mapped[str] = mapped_column(String(256), default="")
    lanes: Mapped[dict[str, Any]] = mapped_column(JSON)  # {"training": 1, "short": 2}
    devices: Mapped[dict[str, Any]] = mapped_column(JSON)  # domain.hardware.Devices.to_json()
    started_at: Mapped[int] = mapped_column(Integer)
    heartbeat_at: Mapped[float] = mapped_column(Float)


class JobEvent(Base):
    __tablename__ = "job_events"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    org_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[int] = mapped_column(Integer)
    level: Mapped[str] = mapped_column(String(8))
    message: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(32), default="message")
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    org_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[int] = mapped_column(Integer)
    step_number: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    model_name: Mapped[str] = mapped_column(String(600), unique=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    path: Mapped[str] = mapped_column(Text)


class FineTunedModel(Base):
    __tablename__ = "models"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(512), unique=True)  # the ft: name
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    project_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    job_id: Mapped[str] = mapped_column(String(64))
    base_model: Mapped[str] = mapped_column(String(256))
    owned_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(Integer)
    adapter_path: Mapped[str] = mapped_column(Text)


# --- Billing (migration 0002_billing) -------------------------------------------------------------


class UsageRecord(Base):
    """The append-only usage ledger. ``key`` is the natural key: a retry or a resume never bills twice.

    ``training:<job id>`` (one record when the job ends) and ``inference:<chat completion id>``.
    Prices are the price book's at the time of writing (micro-dollars per 1M tokens); inference costs
    are rated at write time, training costs at read time (the free daily allowance depends on the day).
    """

    __tablename__ = "usage_records"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # training | inference
    org_id: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    api_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model: Mapped[str] = mapped_column(String(600))  # the model called, or the base model trained
    base_model: Mapped[str] = mapped_column(String(256))
    tier: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[int] = mapped_column(BigInteger)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    training_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    num_requests: Mapped[int] = mapped_column(Integer, default=0)
    training_per_1m: Mapped[int] = mapped_column(BigInteger, default=0)
    input_per_1m: Mapped[int] = mapped_column(BigInteger, default=0)
    output_per_1m: Mapped[int] = mapped_column(BigInteger, default=0)
    input_cost: Mapped[int] = mapped_column(BigInteger, default=0)  # micro-dollars
    output_cost: Mapped[int] = mapped_column(BigInteger, default=0)  # micro-dollars


Index("ix_usage_records_org_time", UsageRecord.org_id, UsageRecord.occurred_at)


class TrainingProgress(Base):
    """Tokens trained so far by a running job (cumulative, from the child's last step event).

    Written in the same fenced transaction as the step; a cancelled job is billed from it.
    """

    __tablename__ = "training_progress"
    job_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(64), index=True)
    step: Mapped[int] = mapped_column(Integer, default=0)
    trained_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class SpendLimit(Base):
    """A monthly hard spend limit of an organisation (``scope="organization"``) or one of its projects
    (``scope="project:<id>"``), in cents as the OpenAI API has it."""

    __tablename__ = "spend_limits"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    scope: Mapped[str] = mapped_column(String(80))
    project_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    currency: Mapped[str] = mapped_column(String(8), default="USD")
    interval: Mapped[str] = mapped_column(String(16), default="month")
    threshold_cents: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (UniqueConstraint("org_id", "scope", name="uq_spend_limits_org_scope"),)


# --- Evals (migration 0004_evals) ------------------------------------------------------------------


class Eval(Base):
    """An eval: the shape of its items (``data_source_config``) and its testing criteria."""

    __tablename__ = "evals"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    project_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    name: Mapped[str] = mapped_column(String(256))
    data_source_config: Mapped[dict[str, Any]] = mapped_column(JSON)
    testing_criteria: Mapped[list[Any]] = mapped_column(JSON)
    eval_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    created_at: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[int] = mapped_column(Integer)


class EvalRun(Base):
    """One run of an eval over a data source. Queued runs are claimed by workers with a lease
    (``lease_token`` fences every write, as for jobs); a gate run belongs to a fine-tuning job."""

    __tablename__ = "eval_runs"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    eval_id: Mapped[str] = mapped_column(String(64), index=True)
    org_id: Mapped[str] = mapped_column(String(64), index=True)
    project_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    api_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    name: Mapped[str] = mapped_column(String(256))
    model: Mapped[str | None] = mapped_column(String(600), nullable=True)
    data_source: Mapped[dict[str, Any]] = mapped_column(JSON)
    items: Mapped[list[Any]] = mapped_column(JSON)  # the items, read once when the run was created
    status: Mapped[str] = mapped_column(String(32), index=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    run_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    result_counts: Mapped[dict[str, Any]] = mapped_column(JSON)
    per_testing_criteria_results: Mapped[list[Any]] = mapped_column(JSON)
    per_model_usage: Mapped[list[Any]] = mapped_column(JSON)
    completed_items: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[int | None] = mapped_column(Integer, nullable=True)
    finished_at: Mapped[int | None] = mapped_column(Integer, nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)  # gate runs
    gate_role: Mapped[str | None] = mapped_column(String(16), nullable=True)  # "base" | "tuned"
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_token: Mapped[int] = mapped_column(BigInteger, default=0)
    lease_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class EvalOutputItem(Base):
    """The outcome of one item of a run: the sample generated (or given) and every grader's result."""

    __tablename__ = "eval_output_items"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("eval_runs.id", ondelete="CASCADE"), index=True)
    eval_id: Mapped[str] = mapped_column(String(64))
    org_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(Integer)
    datasource_item_id: Mapped[int] = mapped_column(Integer)
    datasource_item: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # pass | fail | error
    results: Mapped[list[Any]] = mapped_column(JSON)
    sample: Mapped[dict[str, Any]] = mapped_column(JSON)
    __table_args__ = (UniqueConstraint("run_id", "datasource_item_id", name="uq_eval_output_items_run_item"),)


class EvalGate(Base):
    """A fine-tuning job's promotion rule over an eval, and its verdict once the job has trained."""

    __tablename__ = "eval_gates"
    job_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(64), index=True)
    eval_id: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # pending | passed | failed
    verdict: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[int] = mapped_column(Integer)
    decided_at: Mapped[int | None] = mapped_column(Integer, nullable=True)


# --- Administration (migration 0005_admin) ---------------------------------------------------------


class OrgUser(Base):
    """A person of an organisation: ``owner`` or ``reader`` (a reader's keys only read)."""

    __tablename__ = "org_users"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(256), default="")
    role: Mapped[str] = mapped_column(String(16))
    added_at: Mapped[int] = mapped_column(Integer)
    __table_args__ = (UniqueConstraint("org_id", "email", name="uq_org_users_org_email"),)


class ProjectMember(Base):
    """A user's membership of a project: ``owner`` or ``member``."""

    __tablename__ = "project_members"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(String(64), index=True)
    project_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(16))
    added_at: Mapped[int] = mapped_column(Integer)
    __table_args__ = (UniqueConstraint("project_id", "user_id", name="uq_project_members_project_user"),)


class ServiceAccount(Base):
    """A bot identity of one project (``owner``, ``member`` or ``none``) that owns project API keys."""

    __tablename__ = "service_accounts"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int] = mapped_column(Integer)


class AuditLog(Base):
    """Append-only, hash-chained per organisation (``prev_hash`` is unique: the chain cannot fork).

    Holds who did what to which object and when, never content. The migration adds triggers that
    refuse UPDATE and DELETE.
    """

    __tablename__ = "audit_logs"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    org_id: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    type: Mapped[str] = mapped_column(String(64))
    effective_at: Mapped[int] = mapped_column(BigInteger)
    resource_id: Mapped[str | None] = mapped_column(String(600), nullable=True)
    actor_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    actor_owner_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    actor: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    __table_args__ = (UniqueConstraint("org_id", "prev_hash", name="uq_audit_logs_chain"),)


Index("ix_audit_logs_org_seq", AuditLog.org_id, AuditLog.seq)


class OrgKey(Base):
    """An organisation's data key, wrapped by the master key (never stored in clear).

    One row per organisation (``org_id`` is the primary key, so concurrent first uses cannot
    create two). Organisation deletion clears ``wrapped_key`` and sets ``destroyed_at`` first
    (crypto-shredding; the row then also stops a late writer from creating a fresh key), and
    removes the row last.
    """

    __tablename__ = "org_keys"
    org_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    wrapped_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[int] = mapped_column(Integer)
    destroyed_at: Mapped[int | None] = mapped_column(Integer, nullable=True)


class TrainSpeed(Base):
    """A base model's measured training speed on one kind of device (services/throughput.py).

    One row per (base model, device kind such as ``cuda:NVIDIA H200`` or ``cpu:2``), replaced by
    each job that trains there: the steady tokens/s (median of its steps after the first).
    """

    __tablename__ = "train_speeds"
    base_model: Mapped[str] = mapped_column(String(256), primary_key=True)
    device: Mapped[str] = mapped_column(String(256), primary_key=True)
    tokens_per_second: Mapped[float] = mapped_column(Float)
    n_steps: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    updated_at: Mapped[int] = mapped_column(Integer)


class RateLimitKey(Base):
    """One row per API key with a recent request (migration 0013_shared_state; store/shared_state.py):
    the per-key lock a rate-limit check takes first, so that nodes count a key's requests in turn."""

    __tablename__ = "rate_limit_keys"
    key_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_at: Mapped[float] = mapped_column(Float)


class RateLimitHit(Base):
    """An admitted request of an API key in the last window (the sliding log every node shares)."""

    __tablename__ = "rate_limit_hits"
    __table_args__ = (Index("ix_rate_limit_hits_key_at", "key_id", "at"),)
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(String(128))
    at: Mapped[float] = mapped_column(Float)


class DashboardSessionRecord(Base):
    """A dashboard sign-in (dashboard/session.py), valid on every node and across restarts.

    ``id`` is a hash of the session id the cookie carries, and ``sealed_key`` the API key sealed
    with a key derived from that id: the database alone neither signs anyone in nor reveals a key.
    """

    __tablename__ = "dashboard_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(128), index=True)
    sealed_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class IdempotencyKey(Base):
    """The first answer to a create request sent with an ``Idempotency-Key`` header (api/idempotency.py).

    Unique per (organisation, project, key): the INSERT that takes a key is the lock, on every node.
    ``status_code`` is NULL while the first request is in flight; ``fingerprint`` is the SHA-256 of
    the request (NULL while an upload is in flight); ``response`` is sealed with the organisation's
    data key (store/sealed_columns.py). Rows older than ``AFINAR_IDEMPOTENCY_TTL_HOURS`` are swept.
    """

    __tablename__ = "idempotency_keys"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str] = mapped_column(String(64))  # "" for a key without a project
    key: Mapped[str] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(1024))
    fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[int] = mapped_column(Integer, index=True)
    __table_args__ = (UniqueConstraint("org_id", "project_id", "key", name="uq_idempotency_keys_key"),)


# --- Checkpoint sharing (migration 0014_checkpoint_permissions) ------------------------------------


class CheckpointPermission(Base):
    """A fine-tuned model checkpoint shared with a project of its organisation (``cp_`` id): a key
    of that project may call the checkpoint as if it were its own (services/checkpoint_permissions.py)."""

    __tablename__ = "checkpoint_permissions"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    org_id: Mapped[str] = mapped_column(String(64))
    checkpoint: Mapped[str] = mapped_column(String(600))  # the checkpoint's model name (…:ckpt-step-N)
    project_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(Integer)
    __table_args__ = (Index("ix_checkpoint_permissions_org_checkpoint", "org_id", "checkpoint"),)


# --- Responses API (migration 0015_responses) ------------------------------------------------------


class StoredResponse(Base):
    """A response of ``POST /v1/responses`` made with ``store`` true (``resp_`` id; services/responses.py).

    ``settings``, ``input_items``, ``context_items`` and ``output`` are customer content, sealed with
    the organisation's data key (store/sealed_columns.py); ``usage`` holds token counts only."""

    __tablename__ = "responses"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    org_id: Mapped[str] = mapped_column(String(64), index=True)
    project_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    api_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model: Mapped[str] = mapped_column(String(600))
    status: Mapped[str] = mapped_column(String(32))  # completed | incomplete
    incomplete_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    previous_response_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[int] = mapped_column(Integer)
    completed_at: Mapped[int | None] = mapped_column(Integer, nullable=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)  # the request's echoed fields
    input_items: Mapped[list[Any]] = mapped_column(JSON)  # this request's input, as items with ids
    context_items: Mapped[list[Any]] = mapped_column(JSON)  # the conversation before them
    output: Mapped[list[Any]] = mapped_column(JSON)
    usage: Mapped[dict[str, Any]] = mapped_column(JSON)  # input_tokens, output_tokens


# --- Webhooks (migration 0016_webhooks; store/webhooks.py, docs/api.md "Webhooks") ------------------


class WebhookEndpoint(Base):
    """A project's webhook endpoint. ``secrets`` (sealed with the org's data key) holds the signing
    secret, and the previous one while it stays valid after a rotation: ``[{"secret", "expires_at"}]``."""

    __tablename__ = "webhook_endpoints"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    org_id: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(256))
    url: Mapped[str] = mapped_column(String(2048))
    event_types: Mapped[list[Any]] = mapped_column(JSON)
    secrets: Mapped[list[Any]] = mapped_column(JSON)
    secret_hint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[int] = mapped_column(Integer)
    __table_args__ = (Index("ix_webhook_endpoints_org_project", "org_id", "project_id"),)


class WebhookEvent(Base):
    """One event (``evt_``), written in the transaction of the state change it reports; ``payload``
    is the JSON body every delivery of it sends."""

    __tablename__ = "webhook_events"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    org_id: Mapped[str] = mapped_column(String(64), index=True)
    project_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[int] = mapped_column(Integer)


class WebhookDelivery(Base):
    """The outbox: one event for one endpoint, until delivered or given up. Its ``id`` is the
    ``webhook-id`` header of every attempt. The dispatcher claims due rows with a lease
    (queue/webhooks.py)."""

    __tablename__ = "webhook_deliveries"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    org_id: Mapped[str] = mapped_column(String(64))
    endpoint_id: Mapped[str] = mapped_column(String(64), index=True)
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[int] = mapped_column(Integer)
    finished_at: Mapped[int | None] = mapped_column(Integer, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_token: Mapped[int] = mapped_column(BigInteger, default=0)
    lease_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)


class WebhookAttempt(Base):
    """One POST of a delivery: the receiver's status code, or why there was none (timeout, refused)."""

    __tablename__ = "webhook_attempts"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(String(64))
    delivery_id: Mapped[str] = mapped_column(String(64), index=True)
    number: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(String(512), nullable=True)
    duration_ms: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[int] = mapped_column(Integer)

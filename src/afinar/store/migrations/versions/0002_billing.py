"""billing: usage ledger, training progress, spend limits

Revision ID: 0002_billing
Revises: 0001
Create Date: 2026-11-26 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_billing"
down_revision = "0001"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "usage_records",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=True),
        sa.Column("api_key_id", sa.String(length=64), nullable=True),
        sa.Column("job_id", sa.String(length=64), nullable=True),
        sa.Column("model", sa.String(length=600), nullable=False),
        sa.Column("base_model", sa.String(length=256), nullable=False),
        sa.Column("tier", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("training_tokens", sa.BigInteger(), nullable=False),
        sa.Column("num_requests", sa.Integer(), nullable=False),
        sa.Column("training_per_1m", sa.BigInteger(), nullable=False),
        sa.Column("input_per_1m", sa.BigInteger(), nullable=False),
        sa.Column("output_per_1m", sa.BigInteger(), nullable=False),
        sa.Column("input_cost", sa.BigInteger(), nullable=False),
        sa.Column("output_cost", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("key"),
    )
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.create_index("ix_usage_records_org_time", ["org_id", "occurred_at"], unique=False)

    op.create_table(
        "training_progress",
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("trained_tokens", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("job_id"),
    )
    with op.batch_alter_table("training_progress", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_training_progress_org_id"), ["org_id"], unique=False)

    op.create_table(
        "spend_limits",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=80), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=True),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("interval", sa.String(length=16), nullable=False),
        sa.Column("threshold_cents", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"]),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("org_id", "scope", name="uq_spend_limits_org_scope"),
    )
    with op.batch_alter_table("spend_limits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_spend_limits_org_id"), ["org_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("spend_limits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_spend_limits_org_id"))
    op.drop_table("spend_limits")
    with op.batch_alter_table("training_progress", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_training_progress_org_id"))
    op.drop_table("training_progress")
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_records_org_time")
    op.drop_table("usage_records")

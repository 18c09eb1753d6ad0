"""idempotency keys: the first answer to a create request sent with an Idempotency-Key header

Revision ID: 0012_idempotency_keys
Revises: 0001
Create Date: 2026-12-02 10:00:00

``idempotency_keys``: one row per (organisation, project, key) — the unique constraint is what
takes a key, across API nodes — with the request's route and SHA-256 fingerprint, and the first
answer's status and body (sealed). Swept after ``AFINAR_IDEMPOTENCY_TTL_HOURS`` (api/idempotency.py).
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_idempotency_keys"
down_revision = "0001"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("org_id", "project_id", "key", name="uq_idempotency_keys_key"),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")

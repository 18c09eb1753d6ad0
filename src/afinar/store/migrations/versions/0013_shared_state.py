"""shared state: rate-limit counters and dashboard sessions every API node sees

Revision ID: 0013_shared_state
Revises: 0001
Create Date: 2026-12-02 10:00:00

``rate_limit_keys``: one row per API key with a recent request, the lock a rate-limit check takes;
``rate_limit_hits``: the admitted requests of the last window (a sliding log shared by all nodes);
``dashboard_sessions``: dashboard sign-ins, keyed by a hash of the cookie's session id, with the
API key sealed under a key derived from that id (store/shared_state.py, dashboard/session.py).
Used unless ``AFINAR_REDIS_URL`` is set. New tables only; nothing existing changes.
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_shared_state"
down_revision = "0001"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rate_limit_keys",
        sa.Column("key_id", sa.String(length=128), nullable=False),
        sa.Column("last_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key_id"),
    )
    op.create_table(
        "rate_limit_hits",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("key_id", sa.String(length=128), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_rate_limit_hits_key_at", "rate_limit_hits", ["key_id", "at"])
    op.create_table(
        "dashboard_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=128), nullable=False),
        sa.Column("sealed_key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dashboard_sessions_key_id", "dashboard_sessions", ["key_id"])
    op.create_index("ix_dashboard_sessions_expires_at", "dashboard_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_dashboard_sessions_expires_at", table_name="dashboard_sessions")
    op.drop_index("ix_dashboard_sessions_key_id", table_name="dashboard_sessions")
    op.drop_table("dashboard_sessions")
    op.drop_index("ix_rate_limit_hits_key_at", table_name="rate_limit_hits")
    op.drop_table("rate_limit_hits")
    op.drop_table("rate_limit_keys")

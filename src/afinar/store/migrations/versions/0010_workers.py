"""workers: the workers table (devices, lanes, heartbeat) and what a queued job waits for

Revision ID: 0010_workers
Revises: 0001
Create Date: 2026-12-01 11:00:00

``workers``: one row per worker process, written by the worker itself (services/workers.py): its
lanes, the devices it advertises, when it started and its last heartbeat. Claims never read it;
it names the live workers in a waiting job's event and in ``afinar admin workers``.
``jobs.waiting_for``: set (once, with a ``waiting_for_worker`` event) when no live worker can
train the job, cleared by its next claim. Existing rows get NULL.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_workers"
down_revision = "0001"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("host", sa.String(length=256), nullable=False),
        sa.Column("lanes", sa.JSON(), nullable=False),
        sa.Column("devices", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.Integer(), nullable=False),
        sa.Column("heartbeat_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    op.add_column("jobs", sa.Column("waiting_for", sa.String(length=256), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("waiting_for")
    op.drop_table("workers")

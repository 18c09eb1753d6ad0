"""train_speeds: each base model's measured training speed per device kind

Revision ID: 0009_train_speeds
Revises: 0001
Create Date: 2026-12-01 10:50:00

One row per (base model, device kind, e.g. ``cuda:NVIDIA H200`` or ``cpu:2``): the steady tokens/s
of the last job that trained there. Duration estimates use it instead of the catalogue's constant.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_train_speeds"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "train_speeds",
        sa.Column("base_model", sa.String(length=256), nullable=False),
        sa.Column("device", sa.String(length=256), nullable=False),
        sa.Column("tokens_per_second", sa.Float(), nullable=False),
        sa.Column("n_steps", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("base_model", "device"),
    )


def downgrade() -> None:
    op.drop_table("train_speeds")

"""checkpoint permissions: fine-tuned model checkpoints shared with other projects of the organisation

Revision ID: 0014_checkpoint_permissions
Revises: 0001
Create Date: 2026-12-03 10:00:00

``checkpoint_permissions``: one row per (checkpoint, project) grant made through
``POST /v1/fine_tuning/checkpoints/{checkpoint}/permissions`` (an admin key): the checkpoint's
model name, the project it is shared with, and when (services/checkpoint_permissions.py). A key of
that project may call the checkpoint. New table only; nothing existing changes.
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_checkpoint_permissions"
down_revision = "0001"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "checkpoint_permissions",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("checkpoint", sa.String(length=600), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    op.create_index(
        "ix_checkpoint_permissions_org_checkpoint", "checkpoint_permissions", ["org_id", "checkpoint"]
    )


def downgrade() -> None:
    op.drop_index("ix_checkpoint_permissions_org_checkpoint", table_name="checkpoint_permissions")
    op.drop_table("checkpoint_permissions")

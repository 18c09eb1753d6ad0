"""runtime moderation: a per-organisation switch, off by default

Revision ID: 0006_runtime_moderation
Revises: 0001
Create Date: 2026-11-30 06:30:00

``organizations.runtime_moderation``: when true, every chat completion of the organisation has
its input and its output moderated (docs/safety.md). Existing organisations get false.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_runtime_moderation"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "organizations",
        sa.Column("runtime_moderation", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_column("runtime_moderation")

"""retention: file tombstones and a per-organisation file retention

Revision ID: 0008_retention
Revises: 0001
Create Date: 2026-11-30 07:00:00

``files.deleted_at``: a deleted file keeps a content-free row (id, bytes, purpose, created_at) so
billing and job history still name it; its blob is gone and every read path skips it.
``organizations.file_retention_days``: files older than this become tombstones (the worker sweeps
them); NULL follows ``AFINAR_FILE_RETENTION_DAYS``, 0 keeps files forever. Existing rows get NULL.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_retention"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("files", sa.Column("deleted_at", sa.Integer(), nullable=True))
    op.add_column("organizations", sa.Column("file_retention_days", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM files WHERE deleted_at IS NOT NULL")
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.drop_column("deleted_at")
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_column("file_retention_days")

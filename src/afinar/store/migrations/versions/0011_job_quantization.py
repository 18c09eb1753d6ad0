"""job quantization: the QLoRA option a job was created with

Revision ID: 0011_job_quantization
Revises: 0001
Create Date: 2026-12-01 12:00:00

``jobs.quantization``: the job's additive ``quantization`` request field ("nf4": LoRA on a 4-bit
NF4 base, training/quant.py); NULL means none, which existing rows get.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_job_quantization"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("quantization", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("quantization")

"""responses: stored answers of the Responses API (``POST /v1/responses`` with ``store`` true)

Revision ID: 0015_responses
Revises: 0001
Create Date: 2026-12-01 12:45:00

``responses``: one row per stored response (services/responses.py): who made it (organisation,
project, key), the model, its status and timestamps, the response it continues, and four JSON
columns of customer content sealed with the organisation's data key (store/sealed_columns.py):
the request's echoed settings (instructions, metadata, tools, text format…), its input items, the
items of the conversation before them (from ``previous_response_id``) and the output items. The
token usage stays in clear. New table only; nothing existing changes.
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_responses"
down_revision = "0001"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "responses",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=True),
        sa.Column("api_key_id", sa.String(length=64), nullable=True),
        sa.Column("model", sa.String(length=600), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("incomplete_reason", sa.String(length=32), nullable=True),
        sa.Column("previous_response_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("completed_at", sa.Integer(), nullable=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("input_items", sa.JSON(), nullable=False),
        sa.Column("context_items", sa.JSON(), nullable=False),
        sa.Column("output", sa.JSON(), nullable=False),
        sa.Column("usage", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    op.create_index("ix_responses_org_id", "responses", ["org_id"])


def downgrade() -> None:
    op.drop_index("ix_responses_org_id", table_name="responses")
    op.drop_table("responses")

"""evals: evals, eval runs, their output items, and fine-tuning eval gates

Revision ID: 0004_evals
Revises: 0001
Create Date: 2026-11-27 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_evals"
down_revision = "0001"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "evals",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("data_source_config", sa.JSON(), nullable=False),
        sa.Column("testing_criteria", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"]),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    with op.batch_alter_table("evals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_evals_org_id"), ["org_id"], unique=False)

    op.create_table(
        "eval_runs",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("eval_id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=True),
        sa.Column("api_key_id", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("model", sa.String(length=600), nullable=True),
        sa.Column("data_source", sa.JSON(), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("result_counts", sa.JSON(), nullable=False),
        sa.Column("per_testing_criteria_results", sa.JSON(), nullable=False),
        sa.Column("per_model_usage", sa.JSON(), nullable=False),
        sa.Column("completed_items", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.Integer(), nullable=True),
        sa.Column("finished_at", sa.Integer(), nullable=True),
        sa.Column("job_id", sa.String(length=64), nullable=True),
        sa.Column("gate_role", sa.String(length=16), nullable=True),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_token", sa.BigInteger(), nullable=False),
        sa.Column("lease_expires_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    with op.batch_alter_table("eval_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_eval_runs_eval_id"), ["eval_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_eval_runs_org_id"), ["org_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_eval_runs_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_eval_runs_job_id"), ["job_id"], unique=False)

    op.create_table(
        "eval_output_items",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("eval_id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("datasource_item_id", sa.Integer(), nullable=False),
        sa.Column("datasource_item", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.Column("sample", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["eval_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
        sa.UniqueConstraint("run_id", "datasource_item_id", name="uq_eval_output_items_run_item"),
    )
    with op.batch_alter_table("eval_output_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_eval_output_items_run_id"), ["run_id"], unique=False)

    op.create_table(
        "eval_gates",
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("eval_id", sa.String(length=64), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("verdict", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("decided_at", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("job_id"),
    )
    with op.batch_alter_table("eval_gates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_eval_gates_org_id"), ["org_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("eval_gates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_eval_gates_org_id"))
    op.drop_table("eval_gates")
    with op.batch_alter_table("eval_output_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_eval_output_items_run_id"))
    op.drop_table("eval_output_items")
    with op.batch_alter_table("eval_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_eval_runs_job_id"))
        batch_op.drop_index(batch_op.f("ix_eval_runs_status"))
        batch_op.drop_index(batch_op.f("ix_eval_runs_org_id"))
        batch_op.drop_index(batch_op.f("ix_eval_runs_eval_id"))
    op.drop_table("eval_runs")
    with op.batch_alter_table("evals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evals_org_id"))
    op.drop_table("evals")

"""admin: key kinds, roles and owners; users, project members, service accounts; the audit log

Revision ID: 0005_admin
Revises: 0001
Create Date: 2026-11-27 12:00:00

Existing keys were all created as an organisation's first key (bootstrap, ``create_org``): they
become that organisation's admin keys with role owner (docs/admin.md). The audit log is append-only:
triggers refuse UPDATE and DELETE on SQLite and PostgreSQL.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_admin"
down_revision = "0001"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_logs_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_logs is append-only';
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("role", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("owner_type", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("owner_id", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_api_keys_owner_id"), ["owner_id"], unique=False)
    op.execute("UPDATE api_keys SET kind = 'admin', role = 'owner' WHERE kind IS NULL")

    op.create_table(
        "org_users",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("added_at", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"]),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
        sa.UniqueConstraint("org_id", "email", name="uq_org_users_org_email"),
    )
    with op.batch_alter_table("org_users", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_org_users_org_id"), ["org_id"], unique=False)

    op.create_table(
        "project_members",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("added_at", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("project_id", "user_id", name="uq_project_members_project_user"),
    )
    with op.batch_alter_table("project_members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_project_members_org_id"), ["org_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_project_members_user_id"), ["user_id"], unique=False)

    op.create_table(
        "service_accounts",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"]),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    with op.batch_alter_table("service_accounts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_service_accounts_org_id"), ["org_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_service_accounts_project_id"), ["project_id"], unique=False)

    op.create_table(
        "audit_logs",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=True),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("effective_at", sa.BigInteger(), nullable=False),
        sa.Column("resource_id", sa.String(length=600), nullable=True),
        sa.Column("actor_key_id", sa.String(length=64), nullable=True),
        sa.Column("actor_owner_id", sa.String(length=64), nullable=True),
        sa.Column("actor", sa.JSON(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
        sa.UniqueConstraint("org_id", "prev_hash", name="uq_audit_logs_chain"),
    )
    with op.batch_alter_table("audit_logs", schema=None) as batch_op:
        batch_op.create_index("ix_audit_logs_org_seq", ["org_id", "seq"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(
            "CREATE TRIGGER audit_logs_append_only BEFORE UPDATE OR DELETE ON audit_logs "
            "FOR EACH ROW EXECUTE FUNCTION audit_logs_append_only()"
        )
    else:
        for what in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_logs_no_{what.lower()} BEFORE {what} ON audit_logs "
                "BEGIN SELECT RAISE(ABORT, 'audit_logs is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_logs_append_only ON audit_logs")
        op.execute("DROP FUNCTION IF EXISTS audit_logs_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_logs_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_logs_no_delete")
    with op.batch_alter_table("audit_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_logs_org_seq")
    op.drop_table("audit_logs")
    with op.batch_alter_table("service_accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_service_accounts_project_id"))
        batch_op.drop_index(batch_op.f("ix_service_accounts_org_id"))
    op.drop_table("service_accounts")
    with op.batch_alter_table("project_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_project_members_user_id"))
        batch_op.drop_index(batch_op.f("ix_project_members_org_id"))
    op.drop_table("project_members")
    with op.batch_alter_table("org_users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_org_users_org_id"))
    op.drop_table("org_users")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_owner_id"))
        batch_op.drop_column("owner_id")
        batch_op.drop_column("owner_type")
        batch_op.drop_column("role")
        batch_op.drop_column("kind")

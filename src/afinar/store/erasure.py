"""Removing every database row of an organisation (``afinar admin orgs delete``).

Every table with an ``org_id`` column is covered, so a table added later is erased without a
change here. The audit log is append-only by triggers (migration 0005_admin); erasure is its one
deliberate exception: inside the same transaction the triggers are dropped, the organisation's
entries deleted, and the triggers created again, so no other writer ever sees the table
unprotected (the transaction holds the table's lock on PostgreSQL; SQLite DDL is transactional).
"""

from __future__ import annotations

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from afinar.store.db import Database
from afinar.store.tables import ApiKey, AuditLog, Base, Job, Organization, OrgKey

PG_TRIGGER = (
    "CREATE TRIGGER audit_logs_append_only BEFORE UPDATE OR DELETE ON audit_logs "
    "FOR EACH ROW EXECUTE FUNCTION audit_logs_append_only()"
)
SQLITE_TRIGGERS = {
    what: f"CREATE TRIGGER audit_logs_no_{what.lower()} BEFORE {what} ON audit_logs "
    "BEGIN SELECT RAISE(ABORT, 'audit_logs is append-only'); END"
    for what in ("UPDATE", "DELETE")
}
SKIPPED = {AuditLog.__tablename__, OrgKey.__tablename__, Organization.__tablename__}


def org_exists(s: Session, org_id: str) -> bool:
    return s.scalar(select(Organization.id).where(Organization.id == org_id)) is not None


def job_ids(s: Session, org_id: str) -> list[str]:
    return list(s.scalars(select(Job.id).where(Job.org_id == org_id)))


def delete_api_keys(s: Session, org_id: str) -> int:
    return int(s.execute(delete(ApiKey).where(ApiKey.org_id == org_id)).rowcount)  # type: ignore[attr-defined]


def active_jobs(s: Session, org_id: str, terminal: frozenset[str]) -> list[Job]:
    return list(s.scalars(select(Job).where(Job.org_id == org_id, Job.status.not_in(terminal))))


def delete_rows(s: Session, org_id: str) -> dict[str, int]:
    """Delete the organisation's rows in every table (children first), the org row last."""
    counts: dict[str, int] = {}
    if s.get_bind().dialect.name == "sqlite":
        s.execute(text("PRAGMA secure_delete = ON"))  # freed pages are zeroed, not left readable
    for table in reversed(Base.metadata.sorted_tables):
        if table.name in SKIPPED or "org_id" not in table.c:
            continue
        n = s.execute(delete(table).where(table.c.org_id == org_id)).rowcount  # type: ignore[attr-defined]
        if n:
            counts[table.name] = int(n)
    counts["audit_logs"] = erase_audit(s, org_id)
    s.execute(delete(OrgKey).where(OrgKey.org_id == org_id))
    n = s.execute(delete(Organization).where(Organization.id == org_id)).rowcount  # type: ignore[attr-defined]
    if n:
        counts["organizations"] = int(n)
    return counts


def erase_audit(s: Session, org_id: str) -> int:
    """Delete the organisation's audit entries: the one sanctioned path past the append-only triggers."""
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        s.execute(text("LOCK TABLE audit_logs IN ACCESS EXCLUSIVE MODE"))
        s.execute(text("DROP TRIGGER IF EXISTS audit_logs_append_only ON audit_logs"))
    else:
        for what in SQLITE_TRIGGERS:
            s.execute(text(f"DROP TRIGGER IF EXISTS audit_logs_no_{what.lower()}"))
    n = int(s.execute(delete(AuditLog).where(AuditLog.org_id == org_id)).rowcount)  # type: ignore[attr-defined]
    if dialect == "postgresql":
        s.execute(text(PG_TRIGGER))
    else:
        for ddl in SQLITE_TRIGGERS.values():
            s.execute(text(ddl))
    return n


def compact_sqlite(db: Database) -> None:
    """On SQLite: copy the WAL into the database and truncate it, so no old page image of a
    deleted row lingers in ``-wal`` (``delete_rows`` zeroes freed pages with ``secure_delete``)."""
    if db.engine.dialect.name != "sqlite":
        return
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

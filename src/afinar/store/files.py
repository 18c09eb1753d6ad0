"""File rows. A deleted file stays as a content-free tombstone (``deleted_at`` set) that every read
here skips, so a deleted id answers 404 and lists omit it, exactly as if the row were gone."""

from __future__ import annotations

from collections.abc import Collection, Iterator

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session

from afinar.store.pagination import Page, paginate
from afinar.store.tables import File

DELETED = "deleted"


def add(s: Session, row: File) -> File:
    s.add(row)
    s.flush()
    return row


def get(s: Session, org_id: str, file_id: str) -> File | None:
    return s.scalar(select(File).where(File.id == file_id, File.org_id == org_id, File.deleted_at.is_(None)))


def list_page(
    s: Session, org_id: str, *, after: str | None, limit: int, desc: bool, purpose: str | None
) -> Page[File]:
    stmt = select(File).where(File.org_id == org_id, File.deleted_at.is_(None))
    if purpose:
        stmt = stmt.where(File.purpose == purpose)
    return paginate(s, stmt, File, after=after, limit=limit, desc=desc)


def tombstone(s: Session, org_id: str, file_id: str, now: int) -> bool:
    """Make a live file a tombstone: keep id, bytes, purpose and created_at; drop everything that
    describes its content. False when there was no live file."""
    result = s.execute(
        update(File)
        .where(File.id == file_id, File.org_id == org_id, File.deleted_at.is_(None))
        .values(deleted_at=now, status=DELETED, filename="", sha256="", blob_key="", status_details=None)
    )
    return bool(getattr(result, "rowcount", 0))


def all_rows(s: Session, org_id: str) -> Iterator[File]:
    """Every row of the organisation, tombstones included, in creation order (export)."""
    yield from s.scalars(
        select(File).where(File.org_id == org_id).order_by(File.seq).execution_options(yield_per=500)
    )


def expired(
    s: Session, org_id: str, *, now: int, cutoff: int | None, exclude: Collection[str] = ()
) -> list[File]:
    """Live files of the organisation created before ``cutoff`` (retention; None: no retention) or
    past their own ``expires_at`` (``expires_after`` at upload), minus ``exclude``; oldest first."""
    due = and_(File.expires_at.is_not(None), File.expires_at <= now)
    if cutoff is not None:
        due = or_(due, File.created_at < cutoff)
    stmt = select(File).where(File.org_id == org_id, File.deleted_at.is_(None), due)
    if exclude:
        stmt = stmt.where(File.id.not_in(list(exclude)))
    return list(s.scalars(stmt.order_by(File.seq)))


def remove(s: Session, org_id: str, file_id: str) -> None:
    s.execute(delete(File).where(File.id == file_id, File.org_id == org_id))

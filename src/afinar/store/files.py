"""File rows."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from afinar.store.pagination import Page, paginate
from afinar.store.tables import File


def add(s: Session, row: File) -> File:
    s.add(row)
    s.flush()
    return row


def get(s: Session, org_id: str, file_id: str) -> File | None:
    return s.scalar(select(File).where(File.id == file_id, File.org_id == org_id))


def list_page(
    s: Session, org_id: str, *, after: str | None, limit: int, desc: bool, purpose: str | None
) -> Page[File]:
    stmt = select(File).where(File.org_id == org_id)
    if purpose:
        stmt = stmt.where(File.purpose == purpose)
    return paginate(s, stmt, File, after=after, limit=limit, desc=desc)


def remove(s: Session, org_id: str, file_id: str) -> None:
    s.execute(delete(File).where(File.id == file_id, File.org_id == org_id))

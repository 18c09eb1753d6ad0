"""Stored responses of the Responses API (services/responses.py), always read within the caller's
organisation and project: another tenant's response id reads as absent."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from afinar.store.tables import StoredResponse


def add(s: Session, row: StoredResponse) -> None:
    s.add(row)


def get(s: Session, org_id: str, project_id: str | None, response_id: str) -> StoredResponse | None:
    return s.scalar(
        select(StoredResponse).where(
            StoredResponse.id == response_id,
            StoredResponse.org_id == org_id,
            StoredResponse.project_id.is_(None)
            if project_id is None
            else StoredResponse.project_id == project_id,
        )
    )


def remove(s: Session, org_id: str, project_id: str | None, response_id: str) -> bool:
    """Delete the response; False when the caller has none of that id."""
    row = get(s, org_id, project_id, response_id)
    if row is None:
        return False
    s.execute(delete(StoredResponse).where(StoredResponse.seq == row.seq))
    return True

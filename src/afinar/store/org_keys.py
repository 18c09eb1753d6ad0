"""Wrapped organisation data keys (``org_keys``): read, insert once, destroy."""

from __future__ import annotations

import time

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from afinar.store.db import Database
from afinar.store.tables import Organization, OrgKey


def load(db: Database, org_id: str) -> str | None:
    with db.session() as s:
        return s.scalar(select(OrgKey.wrapped_key).where(OrgKey.org_id == org_id))


def insert(db: Database, org_id: str, wrapped: str) -> bool:
    """Store the organisation's first wrapped key; False when one exists or the org does not.

    Race-safe: ``org_id`` is the primary key, so of two concurrent first uses one insert fails
    with an integrity error and that caller re-reads the winner's key.
    """
    try:
        with db.session() as s:
            if s.scalar(select(Organization.id).where(Organization.id == org_id)) is None:
                return False  # never (re-)create a key for an organisation that is gone
            s.add(OrgKey(org_id=org_id, wrapped_key=wrapped, created_at=int(time.time())))
    except IntegrityError:
        return False
    return True


def destroy(db: Database, org_id: str) -> bool:
    """Delete the wrapped key (crypto-shredding), committed before anything else is removed."""
    with db.session() as s:
        return bool(s.execute(delete(OrgKey).where(OrgKey.org_id == org_id)).rowcount)  # type: ignore[attr-defined]

"""Wrapped organisation data keys (``org_keys``): read, insert once, destroy."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from afinar.store.db import Database
from afinar.store.tables import Organization, OrgKey

DESTROYED = ""  # what ``load`` returns for a destroyed key


def load(db: Database, org_id: str) -> str | None:
    """The wrapped key; ``DESTROYED`` once destroyed; None when the organisation never had one."""
    with db.session() as s:
        row = s.scalar(select(OrgKey).where(OrgKey.org_id == org_id))
        if row is None:
            return None
        return DESTROYED if row.destroyed_at is not None or not row.wrapped_key else row.wrapped_key


def insert(db: Database, org_id: str, wrapped: str) -> bool:
    """Store the organisation's first wrapped key; False when one exists or the org does not.

    Race-safe: ``org_id`` is the primary key, so of two concurrent first uses one insert fails
    with an integrity error and that caller re-reads the winner's key.
    """
    try:
        with db.session() as s:
            if s.scalar(select(Organization.id).where(Organization.id == org_id)) is None:
                return False  # never (re-)create a key for an organisation that is gone
            s.add(OrgKey(org_id=org_id, wrapped_key=wrapped, created_at=int(db.now())))
    except IntegrityError:
        return False
    return True


def destroy(db: Database, org_id: str) -> None:
    """Forget the wrapped key for good (crypto-shredding), committed on return.

    The row stays as a marker (``destroyed_at``) so no late writer creates a fresh key while the
    organisation's data is being removed; ``remove`` drops it at the very end.
    """
    now = int(db.now())
    with db.session() as s:
        row = s.scalar(select(OrgKey).where(OrgKey.org_id == org_id).with_for_update())
        if row is None:
            s.add(OrgKey(org_id=org_id, wrapped_key=None, created_at=now, destroyed_at=now))
        else:
            row.wrapped_key = None
            row.destroyed_at = row.destroyed_at or now


def remove(db: Database, org_id: str) -> None:
    with db.session() as s:
        s.execute(delete(OrgKey).where(OrgKey.org_id == org_id))

"""Read and write an organisation's settings: columns of the ``organizations`` row, by name."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from afinar.store.tables import Organization


def read(s: Session, org_id: str, names: Iterable[str]) -> dict[str, Any] | None:
    """``{name: value}`` for the named columns, or None when the organisation does not exist."""
    org = s.scalar(select(Organization).where(Organization.id == org_id))
    if org is None:
        return None
    return {name: getattr(org, name) for name in names}


def write(s: Session, org_id: str, values: Mapping[str, Any]) -> bool:
    """Set the named columns; False when the organisation does not exist."""
    org = s.scalar(select(Organization).where(Organization.id == org_id))
    if org is None:
        return False
    for name, value in values.items():
        setattr(org, name, value)
    s.flush()
    return True

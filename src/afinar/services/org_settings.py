"""An organisation's settings: one object, read and changed by its admins and the operator.

``GET``/``POST /v1/afinar/organization/settings`` (admin key) and ``afinar admin orgs``; the wire
object and the checks of each field are ``api/schemas/settings.py``. An update changes only the
settings it names; every change is written to the audit log as ``organization.settings.updated``
with the changed values.

**Adding a setting**: add a column to ``Organization`` (store/tables.py, with a migration), its
name to ``FIELDS`` and a field to :class:`OrganizationSettings` below, and its parser and help
to ``api/schemas/settings.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from afinar.errors import NotFound
from afinar.services import audit
from afinar.store import org_settings as repo
from afinar.store.db import Database

UPDATED = "organization.settings.updated"
FIELDS = ("runtime_moderation", "file_retention_days")  # each a column of ``Organization``


@dataclass(frozen=True)
class OrganizationSettings:
    id: str
    runtime_moderation: bool = False
    file_retention_days: int | None = None  # None: the operator's default; 0: keep forever

    def values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FIELDS}


@dataclass(frozen=True)
class SettingsUpdate:
    """The settings to change, by name (only those given), each value already checked."""

    changes: Mapping[str, Any]


class OrgSettingsService:
    def __init__(self, *, db: Database) -> None:
        self.db = db

    def get(self, org_id: str) -> OrganizationSettings:
        with self.db.session() as s:
            values = repo.read(s, org_id, FIELDS)
        if values is None:
            raise NotFound(f"No organization found with id '{org_id}'.", param="organization")
        return OrganizationSettings(id=org_id, **values)

    def update(self, org_id: str, update: SettingsUpdate) -> OrganizationSettings:
        """Change the given settings together, then audit what changed."""
        changes = {name: value for name, value in update.changes.items() if name in FIELDS}
        with self.db.session() as s:
            before = repo.read(s, org_id, changes)
            if before is None or not repo.write(s, org_id, changes):
                raise NotFound(f"No organization found with id '{org_id}'.", param="organization")
        changed = {k: v for k, v in changes.items() if before.get(k) != v}
        if changed:
            audit.record(self.db, UPDATED, org_id, org_id, changes=changed)
        return self.get(org_id)


def runtime_moderation(db: Database, org_id: str) -> bool:
    """The chat path's switch (one column, no service needed): False for an unknown organisation."""
    with db.session() as s:
        values = repo.read(s, org_id, ("runtime_moderation",))
    return bool(values and values["runtime_moderation"])

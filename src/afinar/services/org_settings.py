"""An organisation's settings: one object, read and changed by its admins and the operator.

Wire shape (``GET``/``POST /v1/afinar/organization/settings``, admin key; ``afinar admin orgs``)::

    {"object": "organization.settings", "id": "org-…", "runtime_moderation": false}

``POST`` takes any subset of the fields and changes only those (unknown fields are refused, so a
typo never passes silently); every change is written to the audit log as
``organization.settings.updated`` with the changed values.

**Adding a setting**: add a column to ``Organization`` (store/tables.py, with a migration) and
one :class:`SettingField` to ``FIELDS`` below, with a parser that raises ``InvalidRequest``.
Nothing else changes: the API, the CLI's ``afinar admin orgs settings`` and the audit entry read
``FIELDS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from afinar.errors import InvalidRequest, NotFound
from afinar.services import audit
from afinar.services.retention import parse_days
from afinar.store import org_settings as repo
from afinar.store.db import Database

OBJECT = "organization.settings"
UPDATED = "organization.settings.updated"


def parse_bool(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{param}' must be a boolean.", param=param)
    return value


@dataclass(frozen=True)
class SettingField:
    name: str  # the wire name and the Organization column
    parse: Callable[[Any, str], Any]  # (value, param) -> stored value; raises InvalidRequest
    help: str = ""


FIELDS: dict[str, SettingField] = {
    f.name: f
    for f in (
        SettingField(
            "runtime_moderation",
            parse_bool,
            "Moderate every chat completion's input (400 content_policy_violation) and output "
            "(finish_reason content_filter). Off by default.",
        ),
        SettingField(
            "file_retention_days",
            parse_days,
            "Days after which the organisation's files become content-free tombstones (the worker "
            "sweeps them; files a running job or eval run uses wait); 0 keeps them forever; null "
            "follows the operator's AFINAR_FILE_RETENTION_DAYS (unset: forever).",
        ),
    )
}


def get(db: Database, org_id: str) -> dict[str, Any]:
    with db.session() as s:
        values = repo.read(s, org_id, FIELDS)
    if values is None:
        raise NotFound(f"No organization found with id '{org_id}'.", param="organization")
    return {"object": OBJECT, "id": org_id, **values}


def update(db: Database, org_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Validate every given field first, then change them together, then audit the change."""
    unknown = sorted(set(body) - set(FIELDS) - {"object", "id"})
    if unknown:
        raise InvalidRequest(
            f"Unknown organization setting '{unknown[0]}'. Settings are: {', '.join(FIELDS)}.",
            param=unknown[0],
        )
    changes = {name: FIELDS[name].parse(value, name) for name, value in body.items() if name in FIELDS}
    with db.session() as s:
        before = repo.read(s, org_id, changes)
        if before is None or not repo.write(s, org_id, changes):
            raise NotFound(f"No organization found with id '{org_id}'.", param="organization")
    changed = {k: v for k, v in changes.items() if before.get(k) != v}
    if changed:
        audit.record(db, UPDATED, org_id, org_id, changes=changed)
    return get(db, org_id)


def runtime_moderation(db: Database, org_id: str) -> bool:
    """The chat path's switch: False for an unknown organisation."""
    with db.session() as s:
        values = repo.read(s, org_id, ("runtime_moderation",))
    return bool(values and values["runtime_moderation"])

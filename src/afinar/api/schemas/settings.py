"""The organisation's settings on the wire: the ``organization.settings`` object and its update.

Wire shape (``GET``/``POST /v1/afinar/organization/settings``, admin key; ``afinar admin orgs``)::

    {"object": "organization.settings", "id": "org-…", "runtime_moderation": false,
     "file_retention_days": null}

``POST`` takes any subset of the fields (unknown fields are refused, so a typo never passes
silently); each field is checked here, with its own message, in the order the body gives them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, model_validator

from afinar.errors import InvalidRequest
from afinar.services.org_settings import FIELDS, OrganizationSettings, SettingsUpdate

OBJECT = "organization.settings"
MAX_DAYS = 36500


def parse_bool(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{param}' must be a boolean.", param=param)
    return value


def parse_days(value: Any, param: str = "file_retention_days") -> int | None:
    """An integer 0..36500 (0 keeps forever) or null (the operator's default)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DAYS:
        raise InvalidRequest(f"'{param}' must be null or an integer from 0 to {MAX_DAYS}.", param=param)
    return value


PARSERS: dict[str, Callable[[Any, str], Any]] = {
    "runtime_moderation": parse_bool,
    "file_retention_days": parse_days,
}
HELP = {
    "runtime_moderation": "Moderate every chat completion's input (400 content_policy_violation) and output "
    "(finish_reason content_filter). Off by default.",
    "file_retention_days": "Days after which the organisation's files become content-free tombstones (the "
    "worker sweeps them; files a running job or eval run uses wait); 0 keeps them forever; null follows "
    "the operator's AFINAR_FILE_RETENTION_DAYS (unset: forever).",
}
assert set(PARSERS) == set(FIELDS) == set(HELP)


class OrganizationSettingsUpdate(BaseModel):
    """``POST /v1/afinar/organization/settings``: the fields to change (``object`` and ``id`` are ignored)."""

    changes: dict[str, Any]

    @model_validator(mode="before")
    @classmethod
    def _check(cls, body: Any) -> dict[str, Any]:
        unknown = sorted(set(body) - set(FIELDS) - {"object", "id"})
        if unknown:
            raise InvalidRequest(
                f"Unknown organization setting '{unknown[0]}'. Settings are: {', '.join(FIELDS)}.",
                param=unknown[0],
            )
        return {
            "changes": {name: PARSERS[name](value, name) for name, value in body.items() if name in FIELDS}
        }

    def to_domain(self) -> SettingsUpdate:
        return SettingsUpdate(dict(self.changes))


def settings_object(s: OrganizationSettings) -> dict[str, Any]:
    return {"object": OBJECT, "id": s.id, **s.values()}

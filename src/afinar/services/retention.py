"""File retention per organisation: files older than ``file_retention_days`` become tombstones.

An organisation's ``file_retention_days``: a number of days (≥ 1), 0 (keep forever, whatever the
operator's default), or None (follow ``AFINAR_FILE_RETENTION_DAYS``; unset: keep forever). The
worker calls :func:`sweep` periodically. A file a non-terminal job or a queued/running eval run
uses is never swept: it waits until that work is done. Files past their own ``expires_after`` are
swept the same way. Each sweep goes through ``FilesService.delete`` (blob removed, tombstone kept,
``file.deleted`` audited with ``reason: retention``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from afinar.errors import InvalidRequest, NotFound
from afinar.store import files as files_repo
from afinar.store import retention as repo

if TYPE_CHECKING:
    from afinar.services.container import Container
    from afinar.store.db import Database

log = logging.getLogger("afinar.retention")

DAY = 86400
MAX_DAYS = 36500


def parse_days(value: Any, param: str = "file_retention_days") -> int | None:
    """The wire value: an integer 0..36500 (0 keeps forever) or null (the operator's default)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DAYS:
        raise InvalidRequest(f"'{param}' must be null or an integer from 0 to {MAX_DAYS}.", param=param)
    return value


def effective_days(stored: int | None, default: int | None) -> int | None:
    """Days after which a file is swept, or None for never."""
    days = default if stored is None else stored
    return days or None


def set_days(db: Database, org_id: str, days: int | None) -> int | None:
    """Store an organisation's retention through its settings object (validated, audited as
    ``organization.settings.updated``); the stored value."""
    from afinar.services import org_settings

    value: int | None = org_settings.update(db, org_id, {"file_retention_days": days})["file_retention_days"]
    return value


def sweep(c: Container) -> list[str]:
    """Tombstone every file past its organisation's retention (or its own expiry); the ids swept."""
    now = int(c.clock())
    default = c.settings.file_retention_days
    with c.db.session() as s:
        plans = repo.org_retentions(s)
    swept: list[str] = []
    for org_id, stored in plans:
        days = effective_days(stored, default)
        cutoff = now - days * DAY if days else None
        with c.db.session() as s:
            busy = repo.files_in_use(s, org_id)
            due = [r.id for r in files_repo.expired(s, org_id, now=now, cutoff=cutoff, exclude=busy)]
        for file_id in due:
            try:
                c.files.delete(org_id, file_id, reason="retention")
            except NotFound:
                continue  # deleted meanwhile
            except Exception:
                log.exception("retention: could not delete %s of %s", file_id, org_id)
                continue
            swept.append(file_id)
    if swept:
        log.info("retention: %d file(s) became tombstones", len(swept))
    return swept

"""File retention per organisation: files older than ``file_retention_days`` become tombstones.

An organisation's ``file_retention_days``: a number of days (≥ 1), 0 (keep forever, whatever the
operator's default), or None (follow ``AFINAR_FILE_RETENTION_DAYS``; unset: keep forever). The
worker calls :meth:`RetentionService.sweep` periodically. A file a non-terminal job or a
queued/running eval run uses is never swept: it waits until that work is done. Files past their
own ``expires_after`` are swept the same way. Each sweep goes through the files service's
``delete`` (blob removed, tombstone kept, ``file.deleted`` audited with ``reason: retention``).
"""

from __future__ import annotations

import logging
from typing import Protocol

from afinar.config import Settings
from afinar.errors import NotFound
from afinar.services.org_settings import OrgSettingsService, SettingsUpdate
from afinar.store import files as files_repo
from afinar.store import retention as repo
from afinar.store.db import Database

log = logging.getLogger("afinar.retention")

DAY = 86400


class FileDeleter(Protocol):
    def delete(self, org_id: str, file_id: str, *, reason: str | None = None) -> str: ...


def effective_days(stored: int | None, default: int | None) -> int | None:
    """Days after which a file is swept, or None for never."""
    days = default if stored is None else stored
    return days or None


class RetentionService:
    """``settings.file_retention_days`` (the operator's default) is read at every sweep."""

    def __init__(
        self, *, db: Database, settings: Settings, files: FileDeleter, org_settings: OrgSettingsService
    ) -> None:
        self.db = db
        self.settings = settings
        self.files = files
        self.org_settings = org_settings

    def set_days(self, org_id: str, days: int | None) -> int | None:
        """Store an organisation's retention (checked by the caller) through its settings object,
        audited as ``organization.settings.updated``; the stored value."""
        return self.org_settings.update(
            org_id, SettingsUpdate({"file_retention_days": days})
        ).file_retention_days

    def effective_days(self, stored: int | None) -> int | None:
        return effective_days(stored, self.settings.file_retention_days)

    def sweep(self) -> list[str]:
        """Tombstone every file past its organisation's retention (or its own expiry); the ids swept."""
        now = int(self.db.now())
        with self.db.session() as s:
            plans = repo.org_retentions(s)
        swept: list[str] = []
        for org_id, stored in plans:
            days = self.effective_days(stored)
            cutoff = now - days * DAY if days else None
            with self.db.session() as s:
                busy = repo.files_in_use(s, org_id)
                due = [r.id for r in files_repo.expired(s, org_id, now=now, cutoff=cutoff, exclude=busy)]
            for file_id in due:
                try:
                    self.files.delete(org_id, file_id, reason="retention")
                except NotFound:
                    continue  # deleted meanwhile
                except Exception:
                    log.exception("retention: could not delete %s of %s", file_id, org_id)
                    continue
                swept.append(file_id)
        if swept:
            log.info("retention: %d file(s) became tombstones", len(swept))
        return swept

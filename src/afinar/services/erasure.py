"""Deleting an organisation for good (``afinar admin orgs delete ORG --yes``).

Order matters, and every step may be repeated (an interrupted run is simply run again):

1. **Crypto-shred**: the organisation's wrapped data key is destroyed and that is committed
   before anything else. From then on every file, result, adapter and checkpoint encrypted under
   it is unreadable, even if a later step never runs.
2. Its API keys are deleted, so no request of the organisation authenticates any more.
3. Its unfinished jobs are cancelled; a worker training one loses its lease and kills the child.
4. Its blobs (``<org>/`` in the blob store) and its jobs' directories are removed.
5. Its rows go in one transaction: every table with an ``org_id``, the audit log through its
   one deliberate exception to append-only (``store/erasure.py``), the key marker, the org row.
6. One content-free ``organization.deleted`` audit entry stays as the tombstone of the deletion
   (the organisation id, when, and how many objects of each kind were removed), and on SQLite
   the write-ahead log is checkpointed so no image of a deleted row stays in ``-wal``.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from afinar.blobs.local import BlobStore
from afinar.crypto.keys import KeyRing
from afinar.domain.jobs import TERMINAL, JobStatus
from afinar.errors import NotFound
from afinar.queue.leases import revoke
from afinar.services import audit
from afinar.store import erasure as repo
from afinar.store import org_keys
from afinar.store.db import Database

if TYPE_CHECKING:
    from afinar.inference.protocol import InferenceEngine

log = logging.getLogger("afinar.erasure")

ORG_DELETED = "organization.deleted"


@dataclass
class ErasureReport:
    org_id: str
    key_destroyed: bool = False
    api_keys_deleted: int = 0
    jobs_cancelled: list[str] = field(default_factory=list)
    job_dirs_removed: int = 0
    blobs_removed: int = 0
    rows_deleted: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "org_id": self.org_id,
            "key_destroyed": self.key_destroyed,
            "api_keys_deleted": self.api_keys_deleted,
            "jobs_cancelled": self.jobs_cancelled,
            "job_dirs_removed": self.job_dirs_removed,
            "blobs_removed": self.blobs_removed,
            "rows_deleted": self.rows_deleted,
        }


class ErasureService:
    """``loaded_engine``: the inference engine if one was created (its adapters are unloaded)."""

    def __init__(
        self,
        *,
        db: Database,
        keys: KeyRing,
        blobs: BlobStore,
        jobs_dir: Path,
        loaded_engine: Callable[[], InferenceEngine | None],
    ) -> None:
        self.db = db
        self.keys = keys
        self.blobs = blobs
        self.jobs_dir = jobs_dir
        self.loaded_engine = loaded_engine

    def _has_remnants(self, org_id: str) -> bool:
        with self.db.session() as s:
            if repo.org_exists(s, org_id):
                return True
        return org_keys.load(self.db, org_id) is not None or bool(self.blobs.keys(f"{org_id}/"))

    def delete_org(self, org_id: str) -> ErasureReport:
        if not org_id or "/" in org_id or org_id in (".", ".."):
            raise NotFound(f"No such organization: {org_id!r}", param="org_id")
        if not self._has_remnants(org_id):
            raise NotFound(f"No such organization: {org_id}", param="org_id")
        report = ErasureReport(org_id)

        # 1. crypto-shredding, committed first
        org_keys.destroy(self.db, org_id)
        self.keys.forget(org_id)
        report.key_destroyed = True

        # 2. keys stop working at once
        with self.db.session() as s:
            report.api_keys_deleted = repo.delete_api_keys(s, org_id)

        # 3. cancel what is still running or queued
        now = int(self.db.now())
        with self.db.session() as s:
            for job in repo.active_jobs(s, org_id, frozenset(str(t) for t in TERMINAL)):
                job.status = JobStatus.CANCELLED
                job.finished_at = now
                job.estimated_finish = None
                revoke(s, job)  # its worker loses the lease and kills the training child
                report.jobs_cancelled.append(job.id)
            jobs = repo.job_ids(s, org_id)

        # 4. content: blobs (already unreadable) and plaintext job directories
        engine = self.loaded_engine()
        for job_id in jobs:
            job_dir = self.jobs_dir / job_id
            if engine is not None and hasattr(engine, "unload"):
                for p in [job_dir / "final", *job_dir.glob("checkpoints/*")]:
                    engine.unload(p)
            if job_dir.exists():
                shutil.rmtree(job_dir, ignore_errors=True)
                report.job_dirs_removed += 1
        report.blobs_removed = len(self.blobs.keys(f"{org_id}/"))
        self.blobs.delete_prefix(f"{org_id}/")

        # 5. rows, in one transaction (the key marker and the org row last)
        with self.db.session() as s:
            report.rows_deleted = repo.delete_rows(s, org_id)

        # 6. the tombstone, and no trace left in SQLite's write-ahead log
        counts = {"files": report.rows_deleted.get("files", 0), "jobs": report.rows_deleted.get("jobs", 0)}
        audit.record(self.db, ORG_DELETED, org_id, org_id, project_id=None, deleted=counts)
        try:
            repo.compact_sqlite(self.db)
        except Exception:  # a busy database: the next checkpoint does it
            log.warning("checkpointing the SQLite WAL after deleting %s failed", org_id, exc_info=True)
        log.info("organisation %s deleted: %s", org_id, report.to_dict())
        return report

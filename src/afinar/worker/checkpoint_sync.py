"""A job's checkpoints in the blob store as training goes, so that it resumes on any worker.

Workers share no disk (docs/deploy.md): each one trains in its own ``<data_dir>/jobs/<job>/``.
When the training child reports a checkpoint, the worker seals the whole directory, resume state
included (optimizer moments, step and token counters), into ``<org>/resume/<job>/<rel>.tar``. It
keeps the newest one, and the one the job's row names until the new one is recorded. A
checkpoint at an epoch end is also sealed in its published form (``ArtefactsService.seal``), so
the checkpoint model survives the worker that made it. Only then does the database point the job
at the checkpoint: a worker that claims the job later (another machine, an empty data directory)
finds the blob and unpacks it into its own job directory.

The resume blobs go when the job ends (``forget``), or at the worker's next sweep when it ended
with no worker holding it (``sweep_resume_state``); the published ones stay with the model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from afinar.domain.jobs import TERMINAL, JobStatus
from afinar.store import admin as admin_repo
from afinar.store import jobs as jobs_repo

if TYPE_CHECKING:
    from afinar.blobs.local import BlobStore
    from afinar.services.artefacts import ArtefactsService
    from afinar.store.db import Database

log = logging.getLogger("afinar.worker")

KEEP_ALL = frozenset[str]()


def resume_prefix(org_id: str, job_id: str) -> str:
    return f"{org_id}/resume/{job_id}/"


class CheckpointSync:
    def __init__(
        self, *, artefacts: ArtefactsService, blobs: BlobStore, org_id: str, job_id: str, job_dir: Path
    ) -> None:
        self.artefacts = artefacts
        self.blobs = blobs
        self.org_id = org_id
        self.job_id = job_id
        self.job_dir = job_dir
        self._recorded: str | None = None  # the resume blob the job's row points at now

    def _relative(self, directory: Path) -> Path | None:
        """The part of a checkpoint path below its job directory (on whichever worker wrote it)."""
        parts = Path(directory).parts
        if self.job_id not in parts:
            return None
        rel = parts[len(parts) - 1 - parts[::-1].index(self.job_id) + 1 :]
        return Path(*rel) if rel else None

    def _key(self, rel: Path) -> str:
        return resume_prefix(self.org_id, self.job_id) + rel.as_posix() + ".tar"

    def upload(self, directory: Path, *, published: bool) -> None:
        """Seal a checkpoint the child just wrote (and, at an epoch end, its published form)."""
        rel = self._relative(directory)
        if rel is None:
            raise ValueError(f"checkpoint {directory} is not under job {self.job_id}")
        key = self.artefacts.seal(self.org_id, directory, skip=KEEP_ALL, key=self._key(rel))
        if published:
            self.artefacts.seal(self.org_id, directory)
        # Older ones go, except the one the job's row still names until the new one is recorded.
        for older in self.blobs.keys(resume_prefix(self.org_id, self.job_id)):
            if older not in (key, self._recorded):
                self.blobs.delete(older)
        self._recorded = key

    def local(self, saved: str | None) -> Path | None:
        """A local directory holding the checkpoint the job was last saved at: this worker's own
        copy, or the one unpacked from the store; None when there is none to resume from."""
        if not saved:
            return None
        path = Path(saved)
        rel = self._relative(path)
        self._recorded = self._key(rel) if rel is not None else None
        if path.is_dir():  # written on this machine
            return path
        if rel is None or not self.blobs.exists(self._key(rel)):
            return None
        target = self.artefacts.unpack(self.org_id, self._key(rel), self.job_dir / rel)
        log.info("job %s: checkpoint %s fetched from the blob store", self.job_id, rel)
        return target

    def forget(self) -> None:
        """The job ended: its resume state is not needed anywhere any more."""
        self.blobs.delete_prefix(resume_prefix(self.org_id, self.job_id))


def sweep_resume_state(db: Database, blobs: BlobStore) -> int:
    """Remove the resume objects of jobs that ended while no worker ran them (a paused or orphaned
    job cancelled through the API); the number of objects removed. Part of the worker's sweep."""
    with db.session() as s:
        orgs = [org.id for org in admin_repo.all_orgs(s)]
    removed = 0
    for org_id in orgs:
        jobs = {key.split("/")[2] for key in blobs.keys(f"{org_id}/resume/")}
        for job_id in sorted(jobs):
            with db.session() as s:
                job = jobs_repo.get_any(s, job_id)
            if job is None or JobStatus(job.status) in TERMINAL:
                prefix = resume_prefix(org_id, job_id)
                removed += len(blobs.keys(prefix))
                blobs.delete_prefix(prefix)
    if removed:
        log.info("removed %d resume objects of ended jobs", removed)
    return removed

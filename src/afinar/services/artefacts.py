"""Model artefacts encrypted at rest: each published adapter or checkpoint is one encrypted tar.

The training child writes plaintext directories under ``<jobs_dir>/<job>/`` (the final adapter,
checkpoints). Once the job succeeds, the worker seals each published directory into the blob
``<org>/models/<job>/<dir>.tar`` (the organisation's data key, ``afinar.blobs.sealed``) and
removes the job directory. The directory path stays the model's name for it in the database and
in the serving engine; ``open_dir`` turns it into plaintext for as long as a loader needs it:
a private directory in memory (``/dev/shm``) removed as soon as the block ends. Before
publication (the safety and eval gates) the plaintext directory still exists and is used as is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from afinar.errors import NotFound
from afinar.store import jobs as jobs_repo

if TYPE_CHECKING:
    from afinar.blobs.scratch import Scratch
    from afinar.blobs.sealed import SealedBlobs
    from afinar.config import Settings
    from afinar.store.db import Database

# What a terminal job never needs again: resume state (optimizer moments, step counters).
RESUME_ONLY = frozenset({"optimizer.pt", "state.json"})
JOBS_DIR_NAME = "jobs"  # Settings.jobs_dir is <data_dir>/jobs on every node
JOB_ID_PREFIX = "ftjob-"


def _safe_name(name: str) -> PurePosixPath:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ValueError(f"unsafe member name in a model archive: {name!r}")
    return p


class ArtefactsService:
    def __init__(self, *, db: Database, settings: Settings, sealed: SealedBlobs, scratch: Scratch) -> None:
        self.db = db
        self.settings = settings
        self.sealed = sealed
        self.scratch = scratch

    # -- naming -------------------------------------------------------------------------------

    def _relative(self, directory: Path) -> Path | None:
        """``<job id>/...`` of a directory a training child wrote, here or on another node: each
        node has its own data directory, so a path recorded by a worker elsewhere is recognised by
        its ``jobs/<ftjob-...>`` part (docs/deploy.md, "No shared disk")."""
        try:
            return Path(directory).resolve().relative_to(self.settings.jobs_dir.resolve())
        except ValueError:
            pass
        parts = Path(directory).parts
        for i in range(len(parts) - 1, 0, -1):
            if parts[i - 1] == JOBS_DIR_NAME and parts[i].startswith(JOB_ID_PREFIX):
                return Path(*parts[i:])
        return None  # not written by a training job

    def blob_key(self, org_id: str, directory: Path) -> str:
        rel = self._relative(directory)
        if rel is None:
            digest = hashlib.sha256(str(Path(directory).resolve()).encode()).hexdigest()[:32]
            return f"{org_id}/models/_external/{digest}.tar"
        return f"{org_id}/models/{rel.as_posix()}.tar"

    def _org_of(self, directory: Path) -> str:
        rel = self._relative(directory)
        job = None
        if rel is not None and rel.parts:
            with self.db.session() as s:
                job = jobs_repo.get_any(s, rel.parts[0])
        if job is None:
            raise NotFound(f"adapter not found at {directory}", code="model_not_found")
        return str(job.org_id)

    # -- writing ------------------------------------------------------------------------------

    def seal(
        self, org_id: str, directory: Path, skip: frozenset[str] = RESUME_ONLY, key: str | None = None
    ) -> str:
        """Store ``directory`` as one encrypted tar (files only, minus ``skip``) under ``key`` (by
        default the directory's published key); the blob key."""
        directory = Path(directory)
        key = key or self.blob_key(org_id, directory)
        with (
            self.sealed.writer(org_id, key) as out,
            tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar,
        ):
            for path in sorted(directory.rglob("*")):
                if path.is_file() and not path.is_symlink() and path.name not in skip:
                    info = tar.gettarinfo(str(path), arcname=path.relative_to(directory).as_posix())
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    info.mode = 0o600
                    with path.open("rb") as f:
                        tar.addfile(info, f)
        return key

    def delete(self, org_id: str, directory: Path) -> None:
        self.sealed.delete(self.blob_key(org_id, directory))

    # -- reading ------------------------------------------------------------------------------

    def is_sealed(self, org_id: str, directory: Path) -> bool:
        return self.sealed.exists(self.blob_key(org_id, directory))

    def members(self, org_id: str, directory: Path) -> Iterator[tuple[str, int, IO[bytes]]]:
        """(relative name, size, plaintext stream) of every file, decrypted as it is read."""
        directory = Path(directory)
        if directory.is_dir():  # not yet published: the plaintext written by training
            for path in sorted(directory.rglob("*")):
                if path.is_file():
                    with path.open("rb") as f:
                        yield path.relative_to(directory).as_posix(), path.stat().st_size, f
            return
        key = self.blob_key(org_id, directory)
        if not self.sealed.exists(key):
            raise NotFound(f"adapter not found at {directory}", code="model_not_found")
        yield from self.sealed_members(org_id, key)

    def sealed_members(self, org_id: str, key: str) -> Iterator[tuple[str, int, IO[bytes]]]:
        """(relative name, size, plaintext stream) of every file of the sealed tar ``key``."""
        with self.sealed.open(org_id, key) as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                stream = tar.extractfile(info)
                if stream is not None:
                    yield str(_safe_name(info.name)), info.size, stream

    def read_json(self, org_id: str, directory: Path, name: str) -> dict[str, Any] | None:
        try:
            for member, _size, stream in self.members(org_id, directory):
                if member == name:
                    data = json.loads(stream.read())
                    return data if isinstance(data, dict) else None
        except (NotFound, ValueError, OSError):
            return None
        return None

    @contextlib.contextmanager
    def open_dir(self, directory: Path, org_id: str | None = None) -> Iterator[Path]:
        """A plaintext directory of the artefact, alive until the block ends.

        Sealed artefacts are decrypted into a private directory in memory (``/dev/shm`` where it
        exists), because peft and the tokenizer load from a directory; it is removed right after.
        """
        directory = Path(directory)
        if directory.is_dir():
            yield directory
            return
        org = org_id or self._org_of(directory)
        with self.scratch.directory(memory=True) as tmp:
            _write_members(self.members(org, directory), tmp)
            yield tmp

    def unpack(self, org_id: str, key: str, target: Path) -> Path:
        """Decrypt the sealed tar ``key`` into the directory ``target`` (a worker's job directory),
        which appears complete or not at all."""
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.unpack")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            _write_members(self.sealed_members(org_id, key), tmp)
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target


def _write_members(members: Iterator[tuple[str, int, IO[bytes]]], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, _size, stream in members:
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            shutil.copyfileobj(stream, out, 1024 * 1024)

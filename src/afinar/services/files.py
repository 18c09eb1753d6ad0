"""Files: upload (streamed, size-limited, atomic), list, retrieve, content, delete."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from afinar import ids
from afinar.blobs.local import BlobTooLarge
from afinar.errors import InvalidRequest, NotFound
from afinar.services import audit
from afinar.services.filenames import clean_filename
from afinar.store import files as repo
from afinar.store.pagination import Page
from afinar.store.tables import File

if TYPE_CHECKING:
    from afinar.blobs.local import BlobStore
    from afinar.blobs.sealed import SealedBlobs
    from afinar.config import Settings
    from afinar.store.db import Database

UPLOAD_PURPOSES = {"assistants", "batch", "fine-tune", "vision", "user_data", "evals"}


def not_found(file_id: str) -> NotFound:
    return NotFound(f"No such File object: {file_id}", param="id")


class FilesService:
    """Files of an organisation; ``sealed`` encrypts and decrypts, ``blobs`` (ciphertext) deletes."""

    def __init__(
        self, *, db: Database, sealed: SealedBlobs, blobs: BlobStore, settings: Settings
    ) -> None:
        self.db = db
        self.sealed = sealed
        self.blobs = blobs
        self.settings = settings

    def create(
        self,
        org_id: str,
        filename: str,
        purpose: str,
        chunks: Iterable[bytes],
        *,
        expires_after_seconds: int | None = None,
        project_id: str | None = None,
    ) -> File:
        filename = clean_filename(filename)
        if purpose not in UPLOAD_PURPOSES:
            raise InvalidRequest(
                f"'{purpose}' is not one of {sorted(UPLOAD_PURPOSES)} - 'purpose'", param="purpose"
            )
        if purpose == "fine-tune" and not filename.lower().endswith(".jsonl"):
            raise InvalidRequest("Invalid file format for Fine-Tuning API. Must be .jsonl", param="file")
        if expires_after_seconds is not None and not 3600 <= expires_after_seconds <= 2592000:
            raise InvalidRequest(
                "expires_after.seconds must be between 3600 and 2592000", param="expires_after.seconds"
            )
        row = self.store(
            org_id,
            filename,
            purpose,
            chunks,
            expires_after_seconds=expires_after_seconds,
            project_id=project_id,
        )
        data = {"purpose": purpose, "bytes": row.bytes}
        audit.record(self.db, audit.FILE_UPLOADED, org_id, row.id, project_id=project_id, data=data)
        return row

    def store(
        self,
        org_id: str,
        filename: str,
        purpose: str,
        chunks: Iterable[bytes],
        *,
        expires_after_seconds: int | None = None,
        project_id: str | None = None,
    ) -> File:
        """Write the bytes durably (encrypted with the org's key) first, then make the row visible.

        ``bytes`` and ``sha256`` of the row are the plaintext's: what the API reports.
        """
        fid = ids.file_id()
        key = f"{org_id}/files/{fid}"
        try:
            blob = self.sealed.put_stream(org_id, key, chunks, self.settings.max_upload_bytes)
        except BlobTooLarge as exc:
            raise InvalidRequest(
                f"File is too large: the limit is {exc.limit} bytes.", param="file", code="file_too_large"
            ) from None
        now = int(self.db.now())
        row = File(
            id=fid,
            org_id=org_id,
            project_id=project_id,
            filename=filename,
            purpose=purpose,
            bytes=blob.size,
            sha256=blob.sha256,
            blob_key=key,
            status="processed",
            created_at=now,
            expires_at=now + expires_after_seconds if expires_after_seconds else None,
        )
        try:
            with self.db.session() as s:
                repo.add(s, row)
        except BaseException:
            self.blobs.delete(key)
            raise
        return row

    def get(self, org_id: str, file_id: str) -> File:
        with self.db.session() as s:
            row = repo.get(s, org_id, file_id)
        if row is None:
            raise not_found(file_id)
        return row

    def list(
        self, org_id: str, *, after: str | None, limit: int, order: str, purpose: str | None
    ) -> Page[File]:
        if order not in ("asc", "desc"):
            raise InvalidRequest("order must be 'asc' or 'desc'", param="order")
        if not 1 <= limit <= 10000:
            raise InvalidRequest("limit must be between 1 and 10000", param="limit")
        with self.db.session() as s:
            return repo.list_page(s, org_id, after=after, limit=limit, desc=order == "desc", purpose=purpose)

    def content(self, org_id: str, file_id: str) -> Iterator[bytes]:
        return self.iter_content(org_id, file_id)

    def download(self, org_id: str, file_id: str, *, project_id: str | None) -> Iterator[bytes]:
        """The content for a caller who downloads it: recorded in the audit log."""
        chunks = self.iter_content(org_id, file_id)
        audit.record(self.db, audit.FILE_DOWNLOADED, org_id, file_id, project_id=project_id)
        return chunks

    # -- plaintext access (the blob is encrypted at rest; these decrypt) ---------------------------

    def iter_content(self, org_id: str, file_id: str) -> Iterator[bytes]:
        """The file's decrypted bytes, chunk by chunk (constant memory)."""
        row = self.get(org_id, file_id)
        return self.sealed.iter_bytes(org_id, row.blob_key)

    def open(self, org_id: str, file_id: str) -> BinaryIO:
        """A read-only binary file of the decrypted content (wrap in ``io.TextIOWrapper`` for lines)."""
        row = self.get(org_id, file_id)
        return self.sealed.open(org_id, row.blob_key)

    @contextlib.contextmanager
    def materialize(self, org_id: str, file_id: str) -> Iterator[Path]:
        """The plaintext in a private scratch file (0600) for code that needs a path; removed on exit."""
        row = self.get(org_id, file_id)
        suffix = Path(row.filename).suffix[:16]
        with self.sealed.materialize(org_id, row.blob_key, suffix=suffix) as path:
            yield path

    def delete(self, org_id: str, file_id: str, *, reason: str | None = None) -> str:
        """Remove the content; keep a content-free tombstone (id, bytes, purpose, created_at,
        deleted_at) so billing and job history still name the file. Reads answer 404 from now on."""
        row = self.get(org_id, file_id)
        with self.db.session() as s:
            if not repo.tombstone(s, org_id, file_id, int(self.db.now())):
                raise not_found(file_id)
        self.blobs.delete(row.blob_key)
        db, pid = self.db, row.project_id
        if reason:
            audit.record(db, audit.FILE_DELETED, org_id, file_id, project_id=pid, reason=reason)
        else:
            audit.record(db, audit.FILE_DELETED, org_id, file_id, project_id=pid)
        return file_id

"""Blobs in a local directory (the default store). Writes go to a temporary name, are fsynced,
then renamed. ``BlobStore`` is the protocol every store follows (blobs/s3.py for S3)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

CHUNK = 1024 * 1024
PROBE_PREFIX = "_afinar/probe/"  # reserved: organisation ids start with "org-"


@dataclass(frozen=True)
class StoredBlob:
    key: str
    size: int
    sha256: str


class BlobTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"larger than {limit} bytes")
        self.limit = limit


class BlobStore(Protocol):
    """What every store of ciphertext offers (``LocalBlobStore`` here, ``S3BlobStore`` in s3.py).

    Keys are ``/``-separated and relative; a blob is visible only once completely written."""

    def put_stream(self, key: str, chunks: Iterable[bytes], max_bytes: int | None = None) -> StoredBlob: ...
    def put_bytes(self, key: str, data: bytes) -> StoredBlob: ...
    def writer(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]: ...
    def open(self, key: str) -> BinaryIO: ...
    def iter_bytes(self, key: str) -> Iterator[bytes]: ...
    def local_file(self, key: str, target: Path) -> Path: ...
    def exists(self, key: str) -> bool: ...
    def keys(self, prefix: str) -> list[str]: ...
    def delete(self, key: str) -> None: ...
    def delete_prefix(self, prefix: str) -> None: ...
    def probe(self) -> None: ...


def write_counted(
    writer: contextlib.AbstractContextManager[BinaryIO],
    key: str,
    chunks: Iterable[bytes],
    max_bytes: int | None,
) -> StoredBlob:
    """Write ``chunks`` through ``writer`` counting size and SHA-256; ``BlobTooLarge`` past ``max_bytes``
    (raised inside the block, so the partial blob never appears)."""
    digest = hashlib.sha256()
    size = 0
    with writer as out:
        for chunk in chunks:
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                raise BlobTooLarge(max_bytes)
            digest.update(chunk)
            out.write(chunk)
    return StoredBlob(key=key, size=size, sha256=digest.hexdigest())


def probe_store(store: BlobStore) -> None:
    """Write, read back and delete a small object under the reserved ``PROBE_PREFIX`` (the
    readiness check); raises when the store cannot do all three."""
    key = PROBE_PREFIX + uuid.uuid4().hex
    payload = b"afinar-ready-" + key.encode()
    store.put_bytes(key, payload)
    try:
        with store.open(key) as f:
            if f.read() != payload:
                raise OSError("the probe object read back differs from what was written")
    finally:
        store.delete(key)
    if store.exists(key):
        raise OSError("the probe object is still there after its deletion")


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if self.root.resolve() not in p.parents:
            raise ValueError(f"blob key escapes the store: {key!r}")
        return p

    def put_stream(self, key: str, chunks: Iterable[bytes], max_bytes: int | None = None) -> StoredBlob:
        return write_counted(self.writer(key), key, chunks, max_bytes)

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        """A file to write the blob into; it appears under ``key`` (fsynced) only if the block succeeds."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                yield out
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
            fsync_dir(target.parent)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def keys(self, prefix: str) -> list[str]:
        """Every blob key under a folder-like prefix (e.g. ``org_id/``)."""
        base = self.path(prefix.rstrip("/"))
        if not base.is_dir():
            return []
        root = self.root.resolve()
        return sorted(p.relative_to(root).as_posix() for p in base.rglob("*") if p.is_file())

    def delete_prefix(self, prefix: str) -> None:
        """Remove every blob under a folder-like prefix (an organisation's whole tree)."""
        shutil.rmtree(self.path(prefix.rstrip("/")), ignore_errors=True)

    def put_bytes(self, key: str, data: bytes) -> StoredBlob:
        return self.put_stream(key, [data])

    def open(self, key: str) -> BinaryIO:
        return self.path(key).open("rb")

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        with self.open(key) as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def local_file(self, key: str, target: Path) -> Path:
        """A local path holding the blob's bytes: the blob's own file (``target`` is not used)."""
        return self.path(key)

    def probe(self) -> None:
        probe_store(self)

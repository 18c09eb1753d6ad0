"""Blobs encrypted at rest with their organisation's data key (``afinar.crypto.stream``).

Every customer byte goes through here: uploads and result files, eval databases, model
artefacts. Size and SHA-256 reported for a blob are the plaintext's. Reads decrypt as they
stream (constant memory); ``materialize`` gives code that needs a path a private scratch file
that is removed when the block ends. A blob that does not authenticate raises ``ServerError``
(code ``blob_integrity_error``), never silently wrong data.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from afinar.blobs.local import BlobStore, BlobTooLarge, StoredBlob
from afinar.blobs.scratch import Scratch
from afinar.crypto.keys import KeyRing, KeyUnavailable
from afinar.crypto.stream import ChunkReader, EncryptingWriter, TamperedBlob, decrypt_chunks, encrypt_chunks
from afinar.errors import ServerError

INTEGRITY = "blob_integrity_error"
log = logging.getLogger("afinar.blobs")


def integrity_error(key: str, exc: Exception) -> ServerError:
    log.error("blob %s does not decrypt: %s", key, exc)  # the detail stays in the server log
    return ServerError(
        "The stored data cannot be decrypted: it was modified, or its encryption key is gone.", code=INTEGRITY
    )


class SealedBlobs:
    def __init__(self, store: BlobStore, keys: KeyRing, scratch: Scratch) -> None:
        self.store = store
        self.keys = keys
        self.scratch = scratch

    def put_stream(
        self, org_id: str, key: str, chunks: Iterable[bytes], max_bytes: int | None = None
    ) -> StoredBlob:
        """Encrypt and store; size and sha256 are the plaintext's; ``BlobTooLarge`` past ``max_bytes``."""
        digest = hashlib.sha256()
        size = 0

        def counted() -> Iterator[bytes]:
            nonlocal size
            for chunk in chunks:
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise BlobTooLarge(max_bytes)
                digest.update(chunk)
                yield chunk

        data_key = self.keys.data_key(org_id)
        self.store.put_stream(key, encrypt_chunks(data_key, key, counted()))
        return StoredBlob(key=key, size=size, sha256=digest.hexdigest())

    def put_bytes(self, org_id: str, key: str, data: bytes) -> StoredBlob:
        return self.put_stream(org_id, key, [data])

    @contextlib.contextmanager
    def writer(self, org_id: str, key: str) -> Iterator[EncryptingWriter]:
        """A binary file that encrypts into the blob ``key``; the blob appears when the block succeeds."""
        data_key = self.keys.data_key(org_id)
        with self.store.writer(key) as sink:
            w = EncryptingWriter(sink, data_key, key)
            yield w
            w.finish()

    def _decrypting(self, org_id: str, key: str) -> Iterator[bytes]:
        try:
            data_key = self.keys.existing_key(org_id)
        except KeyUnavailable as exc:
            raise integrity_error(key, exc) from None
        try:
            yield from decrypt_chunks(data_key, key, self.store.iter_bytes(key))
        except TamperedBlob as exc:
            raise integrity_error(key, exc) from None

    def iter_bytes(self, org_id: str, key: str) -> Iterator[bytes]:
        """Decrypted chunks; the first segment is checked before this returns."""
        it = self._decrypting(org_id, key)
        first = next(it, None)
        return itertools.chain([first] if first is not None else [], it)

    def read_bytes(self, org_id: str, key: str) -> bytes:
        return b"".join(self.iter_bytes(org_id, key))

    def open(self, org_id: str, key: str) -> BinaryIO:
        """A buffered, read-only binary file of the plaintext."""
        return io.BufferedReader(ChunkReader(self.iter_bytes(org_id, key)))

    @contextlib.contextmanager
    def materialize(self, org_id: str, key: str, suffix: str = "") -> Iterator[Path]:
        """The plaintext in a private scratch file (0600), removed when the block ends."""
        with self.scratch.file(self.iter_bytes(org_id, key), suffix=suffix) as path:
            yield path

    def exists(self, key: str) -> bool:
        return self.store.exists(key)

    def delete(self, key: str) -> None:
        self.store.delete(key)

"""A streaming AEAD format for blobs: fixed-size segments, each sealed with AES-256-GCM.

Layout::

    header   = MAGIC (4) | VERSION (1) | segment size (4, big endian) | nonce prefix (7)
    segment* = AES-GCM(plaintext[i*S:(i+1)*S]) + 16-byte tag

The nonce of segment ``i`` is ``prefix (7) | i (4, big endian) | last (1)``; the associated data
is ``header | len(name) | name | i | last``. So a blob cannot be truncated at a segment boundary
(the last segment carries the flag), segments cannot be reordered (the index is authenticated),
and a blob cannot be swapped for another (its name — the blob key — is authenticated). An empty
plaintext is one empty, last segment. Encryption and decryption hold one segment in memory.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"AFB1"
VERSION = 1
SEGMENT = 64 * 1024
TAG = 16
PREFIX = 7
HEADER = struct.Struct(">4sBI7s")
HEADER_SIZE = HEADER.size  # 16
MAX_SEGMENTS = 2**32


class TamperedBlob(Exception):
    """The ciphertext does not authenticate: wrong key, wrong blob, or modified bytes."""


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    if index >= MAX_SEGMENTS:
        raise ValueError("blob too large for one stream")
    return prefix + struct.pack(">IB", index, 1 if last else 0)


def _aad(header: bytes, name: bytes, index: int, last: bool) -> bytes:
    return header + struct.pack(">I", len(name)) + name + struct.pack(">QB", index, 1 if last else 0)


class Encryptor:
    """Push plaintext in, get ciphertext out; ``finish`` seals the last segment."""

    def __init__(self, key: bytes, name: str, segment: int = SEGMENT) -> None:
        self._aead = AESGCM(key)
        self._name = name.encode()
        self._segment = segment
        self._prefix = os.urandom(PREFIX)
        self.header = HEADER.pack(MAGIC, VERSION, segment, self._prefix)
        self._buf = bytearray()
        self._index = 0
        self._started = False
        self._done = False

    def _seal(self, data: bytes, last: bool) -> bytes:
        nonce = _nonce(self._prefix, self._index, last)
        out = self._aead.encrypt(nonce, data, _aad(self.header, self._name, self._index, last))
        self._index += 1
        return out

    def update(self, data: bytes) -> bytes:
        """Ciphertext for every full segment that is known not to be the last one."""
        if self._done:
            raise ValueError("encryptor already finished")
        out = bytearray()
        if not self._started:
            out += self.header
            self._started = True
        self._buf += data
        # keep at least one byte back: a segment is sealed only once we know it is not the last
        while len(self._buf) > self._segment:
            chunk = bytes(self._buf[: self._segment])
            del self._buf[: self._segment]
            out += self._seal(chunk, last=False)
        return bytes(out)

    def finish(self) -> bytes:
        if self._done:
            raise ValueError("encryptor already finished")
        out = b"" if self._started else self.header
        self._started = True
        self._done = True
        last = self._seal(bytes(self._buf), last=True)
        self._buf.clear()
        return out + last


def encrypt_chunks(key: bytes, name: str, chunks: Iterable[bytes], segment: int = SEGMENT) -> Iterator[bytes]:
    enc = Encryptor(key, name, segment)
    for chunk in chunks:
        out = enc.update(chunk)
        if out:
            yield out
    yield enc.finish()


def decrypt_chunks(key: bytes, name: str, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The plaintext of a blob, segment by segment; raises ``TamperedBlob`` on any mismatch."""
    aead = AESGCM(key)
    name_b = name.encode()
    source = iter(chunks)
    buf = bytearray()
    eof = False

    def fill(n: int) -> None:
        nonlocal eof
        while len(buf) < n and not eof:
            try:
                buf.extend(next(source))
            except StopIteration:
                eof = True

    fill(HEADER_SIZE)
    if len(buf) < HEADER_SIZE:
        raise TamperedBlob("the blob is truncated (no header)")
    header = bytes(buf[:HEADER_SIZE])
    del buf[:HEADER_SIZE]
    magic, version, segment, prefix = HEADER.unpack(header)
    if magic != MAGIC or version != VERSION or not 0 < segment <= 64 * 1024 * 1024:
        raise TamperedBlob("not an encrypted Afinar blob (bad header)")
    sealed = segment + TAG
    index = 0
    while True:
        fill(sealed + 1)  # one byte more tells whether this segment is the last
        last = len(buf) <= sealed  # fill() stops short only at the end of the blob
        data = bytes(buf[:sealed])
        del buf[:sealed]
        if len(data) < TAG:
            raise TamperedBlob("the blob is truncated")
        try:
            plain = aead.decrypt(_nonce(prefix, index, last), data, _aad(header, name_b, index, last))
        except InvalidTag:
            raise TamperedBlob(
                f"segment {index} of {name!r} does not authenticate (wrong key, wrong blob or modified bytes)"
            ) from None
        index += 1
        if plain:
            yield plain
        if last:
            return


def encrypted_size(plain_size: int, segment: int = SEGMENT) -> int:
    n_segments = max(1, -(-plain_size // segment))
    return HEADER_SIZE + plain_size + n_segments * TAG


class ChunkReader(io.RawIOBase):
    """A read-only binary file over an iterator of byte chunks (e.g. ``decrypt_chunks``)."""

    def __init__(self, chunks: Iterator[bytes], on_close: BinaryIO | None = None) -> None:
        super().__init__()
        self._chunks = chunks
        self._pending = b""
        self._on_close = on_close

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close.close()
            self._on_close = None
        super().close()


class EncryptingWriter(io.RawIOBase):
    """A write-only binary file that encrypts into ``sink`` (for push-style producers like tarfile)."""

    def __init__(self, sink: BinaryIO, key: bytes, name: str) -> None:
        super().__init__()
        self._sink = sink
        self._enc = Encryptor(key, name)
        self.plain_bytes = 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        data = bytes(b)
        self.plain_bytes += len(data)
        out = self._enc.update(data)
        if out:
            self._sink.write(out)
        return len(data)

    def finish(self) -> None:
        self._sink.write(self._enc.finish())

"""Blobs in an S3-compatible object store (AWS S3, MinIO, Ceph, SeaweedFS), selected by
``AFINAR_BLOB_URL=s3://bucket/prefix``.

boto3 finds the endpoint and the credentials itself (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, or its other usual sources). The store holds
ciphertext only, as the local one does: ``blobs/sealed.py`` encrypts before anything gets here.

Memory stays constant whatever the blob's size: a write buffers one part (``part_size``) and
sends it as a part of a multipart upload; a read streams the object's body. An object appears
only when its upload completes (S3 makes ``CompleteMultipartUpload`` and ``PutObject`` atomic);
a write that fails aborts its upload, so no half-written object is ever visible.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from afinar.blobs.local import CHUNK, StoredBlob, probe_store, write_counted

PART_SIZE = 8 * 1024 * 1024  # S3 needs parts of at least 5 MiB (except the last)
MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (``bucket``, ``some/prefix``); the prefix may be empty."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3://bucket/prefix URL: {url!r}")
    return parsed.netloc, parsed.path.strip("/")


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in MISSING


def _check_key(key: str) -> str:
    p = PurePosixPath(key)
    if not key or p.is_absolute() or ".." in p.parts:
        raise ValueError(f"blob key escapes the store: {key!r}")
    return key


class _MultipartWriter(io.RawIOBase):
    """A write-only file that sends what it is given as the parts of one multipart upload.

    ``commit`` makes the object appear (a single ``PutObject`` when it never reached one part);
    ``abort`` throws the parts away. Holds at most one part in memory."""

    def __init__(self, client: Any, bucket: str, key: str, part_size: int) -> None:
        super().__init__()
        self._client, self._bucket, self._key, self._part_size = client, bucket, key, part_size
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = memoryview(b).cast("B")
        self._buffer += data
        while len(self._buffer) >= self._part_size:
            self._send(bytes(self._buffer[: self._part_size]))
            del self._buffer[: self._part_size]
        return len(data)

    def _send(self, body: bytes) -> None:
        if self._upload_id is None:
            started = self._client.create_multipart_upload(Bucket=self._bucket, Key=self._key)
            self._upload_id = str(started["UploadId"])
        number = len(self._parts) + 1
        sent = self._client.upload_part(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=body
        )
        self._parts.append({"PartNumber": number, "ETag": sent["ETag"]})

    def commit(self) -> None:
        if self._upload_id is None:  # smaller than one part: one atomic PUT
            self._client.put_object(Bucket=self._bucket, Key=self._key, Body=bytes(self._buffer))
        else:
            if self._buffer:
                self._send(bytes(self._buffer))
            self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._buffer.clear()

    def abort(self) -> None:
        self._buffer.clear()
        if self._upload_id is not None:
            with contextlib.suppress(ClientError):
                self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
                )


class _BodyReader(io.RawIOBase):
    """A readable raw file over a streamed ``GetObject`` body (botocore's ``StreamingBody``)."""

    def __init__(self, body: Any) -> None:
        super().__init__()
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        data = self._body.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def client_from_environment() -> Any:
    """An S3 client configured the standard way (environment, ~/.aws), with standard retries."""
    return boto3.client("s3", config=Config(retries={"mode": "standard", "max_attempts": 5}))


class S3BlobStore:
    def __init__(
        self, bucket: str, prefix: str = "", *, client: Any = None, part_size: int = PART_SIZE
    ) -> None:
        if part_size < 5 * 1024 * 1024:
            raise ValueError("S3 parts are at least 5 MiB")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client if client is not None else client_from_environment()
        self.part_size = part_size

    @classmethod
    def from_url(cls, url: str, *, client: Any = None) -> S3BlobStore:
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix, client=client)

    # -- naming -------------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        key = _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _folder(self, prefix: str) -> str:
        """The object-name prefix of a folder-like blob prefix (``org-1/`` -> ``<prefix>/org-1/``)."""
        return self._name(prefix.strip("/")) + "/"

    def _key_of(self, name: str) -> str:
        return name[len(self.prefix) + 1 :] if self.prefix else name

    # -- writing ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        """A file to write the blob into; the object appears under ``key`` only if the block succeeds."""
        out = _MultipartWriter(self.client, self.bucket, self._name(key), self.part_size)
        try:
            yield out  # type: ignore[misc]  # a RawIOBase is a binary file
            out.commit()
        except BaseException:
            out.abort()
            raise

    def put_stream(self, key: str, chunks: Iterable[bytes], max_bytes: int | None = None) -> StoredBlob:
        return write_counted(self.writer(key), key, chunks, max_bytes)

    def put_bytes(self, key: str, data: bytes) -> StoredBlob:
        return self.put_stream(key, [data])

    # -- reading ------------------------------------------------------------------------------

    def _body(self, key: str) -> Any:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._name(key))["Body"]
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(f"no blob {key!r}") from None
            raise

    def open(self, key: str) -> BinaryIO:
        return io.BufferedReader(_BodyReader(self._body(key)), CHUNK)

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        body = self._body(key)
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def local_file(self, key: str, target: Path) -> Path:
        """Download the blob (ciphertext) to ``target`` for code that needs a path; the caller removes it."""
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.part-{os.getpid()}")
        try:
            with tmp.open("wb") as out:
                for chunk in self.iter_bytes(key):
                    out.write(chunk)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return target

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except ClientError as exc:
            if _missing(exc):
                return False
            raise
        return True

    def keys(self, prefix: str) -> list[str]:
        """Every blob key under a folder-like prefix (e.g. ``org_id/``)."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._folder(prefix)
        )
        return sorted(self._key_of(obj["Key"]) for page in pages for obj in page.get("Contents", []))

    # -- deleting -----------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._name(key))  # no error when absent

    def delete_prefix(self, prefix: str) -> None:
        """Remove every blob under a folder-like prefix (an organisation's whole tree), and abort
        the uploads still in progress there (their parts hold ciphertext too)."""
        folder = self._folder(prefix)
        names = [self._name(k) for k in self.keys(prefix)]
        for start in range(0, len(names), 1000):  # DeleteObjects takes 1000 names at a time
            batch = [{"Key": n} for n in names[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=folder
        )
        for page in pages:
            for upload in page.get("Uploads", []):
                with contextlib.suppress(ClientError):
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )

    def probe(self) -> None:
        probe_store(self)

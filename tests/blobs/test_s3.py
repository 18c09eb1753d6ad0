"""The blob stores' shared contract, on a local directory and on S3 (moto's server, real HTTP),
and what only S3 needs: multipart streaming, aborted uploads, prefixes, the URL, sealing."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from afinar.blobs.factory import open_blob_store
from afinar.blobs.local import PROBE_PREFIX, BlobStore, BlobTooLarge, LocalBlobStore
from afinar.blobs.s3 import S3BlobStore, parse_s3_url
from afinar.blobs.scratch import Scratch
from afinar.blobs.sealed import SealedBlobs
from afinar.crypto.keys import KeyRing
from tests.support.s3 import client, moto_bucket, moto_endpoint  # noqa: F401  (fixtures)

MIB = 1024 * 1024
PART = 5 * MIB  # the smallest part S3 takes: multipart starts early in these tests


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    bucket = request.getfixturevalue("moto_bucket")
    return S3BlobStore(bucket, "tenant-data/v1", part_size=PART)


@pytest.fixture
def s3(moto_bucket: str) -> S3BlobStore:  # noqa: F811
    return S3BlobStore(moto_bucket, "pre", part_size=PART)


def pattern(n: int, seed: int = 0) -> Iterator[bytes]:
    """``n`` pseudo-random bytes in 1 MiB chunks, generated on the fly (never all in memory)."""
    block = 0
    while n > 0:
        size = min(MIB, n)
        yield hashlib.shake_256(f"{seed}:{block}".encode()).digest(size)
        n -= size
        block += 1


def object_names(s3: S3BlobStore) -> list[str]:
    listed = client(os.environ["AWS_ENDPOINT_URL"]).list_objects_v2(Bucket=s3.bucket)
    return [o["Key"] for o in listed.get("Contents", [])]


def open_uploads(s3: S3BlobStore) -> list[str]:
    listed = client(os.environ["AWS_ENDPOINT_URL"]).list_multipart_uploads(Bucket=s3.bucket)
    return [u["Key"] for u in listed.get("Uploads", [])]


# -- the contract every store keeps ------------------------------------------------------------


def test_round_trip(store: BlobStore) -> None:
    stored = store.put_stream("org-1/files/a", [b"hello ", b"world"])
    assert (stored.size, stored.sha256) == (11, hashlib.sha256(b"hello world").hexdigest())
    assert store.exists("org-1/files/a") and not store.exists("org-1/files/b")
    with store.open("org-1/files/a") as f:
        assert f.read() == b"hello world"
    assert b"".join(store.iter_bytes("org-1/files/a")) == b"hello world"
    store.put_bytes("org-1/files/a", b"replaced")
    assert b"".join(store.iter_bytes("org-1/files/a")) == b"replaced"
    store.delete("org-1/files/a")
    store.delete("org-1/files/a")  # deleting what is gone is no error
    assert not store.exists("org-1/files/a")


def test_empty_blob(store: BlobStore) -> None:
    assert store.put_stream("org-1/empty", []).size == 0
    assert store.exists("org-1/empty") and b"".join(store.iter_bytes("org-1/empty")) == b""


def test_missing_blob_raises_file_not_found(store: BlobStore) -> None:
    with pytest.raises(FileNotFoundError):
        store.open("org-1/nothing")
    with pytest.raises(FileNotFoundError):
        list(store.iter_bytes("org-1/nothing"))


def test_failed_write_leaves_nothing(store: BlobStore) -> None:
    with pytest.raises(RuntimeError), store.writer("org-1/half") as out:
        out.write(b"x" * 1000)
        raise RuntimeError("the producer died")
    assert not store.exists("org-1/half")
    with pytest.raises(BlobTooLarge):
        store.put_stream("org-1/big", [b"x" * 600, b"y" * 600], max_bytes=1000)
    assert not store.exists("org-1/big")


def test_keys_and_delete_prefix(store: BlobStore) -> None:
    for key in ("org-1/files/a", "org-1/models/j/step-1.tar", "org-10/files/a", "org-2/files/b"):
        store.put_bytes(key, key.encode())
    assert store.keys("org-1/") == ["org-1/files/a", "org-1/models/j/step-1.tar"]  # not org-10's
    assert store.keys("org-1") == store.keys("org-1/")
    store.delete_prefix("org-1/")
    assert store.keys("org-1/") == [] and not store.exists("org-1/files/a")
    assert store.keys("org-10/") == ["org-10/files/a"] and store.exists("org-2/files/b")


def test_keys_that_escape_are_refused(store: BlobStore) -> None:
    with pytest.raises(ValueError):
        store.put_bytes("../outside", b"x")


def test_local_file_holds_the_bytes(store: BlobStore, tmp_path: Path) -> None:
    store.put_bytes("org-1/files/a", b"ciphertext")
    path = store.local_file("org-1/files/a", tmp_path / "copy" / "a.blob")
    assert path.read_bytes() == b"ciphertext"


def test_probe_leaves_nothing(store: BlobStore) -> None:
    store.probe()
    assert store.keys(PROBE_PREFIX) == []


def test_sealed_blobs_on_the_store(store: BlobStore, tmp_path: Path) -> None:
    """Encryption stays client-side: the store holds only ciphertext, reads give the plaintext."""
    wrapped: dict[str, str] = {}
    keys = KeyRing(os.urandom(32), wrapped.get, lambda org, w: wrapped.setdefault(org, w) == w)
    sealed = SealedBlobs(store, keys, Scratch(tmp_path / "scratch"))
    plain = b"canary-" + os.urandom(8).hex().encode()
    sealed.put_bytes("org-1", "org-1/files/c", plain * 100)
    assert plain not in b"".join(store.iter_bytes("org-1/files/c"))
    assert sealed.read_bytes("org-1", "org-1/files/c") == plain * 100
    with sealed.writer("org-1", "org-1/files/w") as out:
        out.write(plain)
    assert sealed.read_bytes("org-1", "org-1/files/w") == plain


# -- S3 only ---------------------------------------------------------------------------------


def test_large_blob_streams_as_multipart_in_constant_memory(s3: S3BlobStore) -> None:
    """Parts reach the server while the producer is still producing: the writer holds one part at
    most, never the blob (the in-process server keeps objects in memory, so memory itself is
    measured by bench/blob_s3.py, not here)."""
    size = 4 * PART + 123  # five parts
    raw = client(os.environ["AWS_ENDPOINT_URL"])
    sent_while_producing: list[int] = []

    def producer() -> Iterator[bytes]:
        for i, chunk in enumerate(pattern(size)):
            if i == 3 * PART // MIB:  # 3 parts produced: at least 2 must be on the server already
                (upload,) = raw.list_multipart_uploads(Bucket=s3.bucket)["Uploads"]
                parts = raw.list_parts(Bucket=s3.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                sent_while_producing.append(len(parts.get("Parts", [])))
            yield chunk

    stored = s3.put_stream("org-1/big", producer())
    assert sent_while_producing and sent_while_producing[0] >= 2
    expected = hashlib.sha256(b"".join(pattern(size))).hexdigest()
    assert (stored.size, stored.sha256) == (size, expected)
    head = client(os.environ["AWS_ENDPOINT_URL"]).head_object(Bucket=s3.bucket, Key="pre/org-1/big")
    assert head["ETag"].strip('"').endswith("-5")  # S3's mark of an object assembled from 5 parts
    digest = hashlib.sha256()
    for chunk in s3.iter_bytes("org-1/big"):
        assert len(chunk) <= MIB
        digest.update(chunk)
    assert digest.hexdigest() == expected
    with s3.open("org-1/big") as f:
        assert f.read(10) == next(pattern(10))[:10]


def test_aborted_multipart_upload_leaves_nothing(s3: S3BlobStore) -> None:
    with pytest.raises(RuntimeError), s3.writer("org-1/half") as out:
        for chunk in pattern(2 * PART + 5):  # two parts already sent
            out.write(chunk)
        assert open_uploads(s3) == ["pre/org-1/half"]  # in progress, not an object
        assert not s3.exists("org-1/half")
        raise RuntimeError("the worker died mid-upload")
    assert open_uploads(s3) == []
    assert object_names(s3) == []


def test_delete_prefix_aborts_uploads_left_by_a_crash(s3: S3BlobStore) -> None:
    raw = client(os.environ["AWS_ENDPOINT_URL"])
    raw.create_multipart_upload(Bucket=s3.bucket, Key="pre/org-1/files/crashed")
    raw.create_multipart_upload(Bucket=s3.bucket, Key="pre/org-2/files/other")
    s3.put_bytes("org-1/files/a", b"a")
    s3.delete_prefix("org-1/")
    assert open_uploads(s3) == ["pre/org-2/files/other"]
    assert object_names(s3) == []


def test_prefix_keeps_stores_apart(moto_bucket: str) -> None:  # noqa: F811
    a, b = S3BlobStore(moto_bucket, "a"), S3BlobStore(moto_bucket, "b")
    a.put_bytes("org-1/x", b"a")
    assert not b.exists("org-1/x") and b.keys("org-1/") == []
    b.delete_prefix("org-1/")
    assert a.exists("org-1/x")


def test_url_selects_the_store(moto_bucket: str, tmp_path: Path) -> None:  # noqa: F811
    assert parse_s3_url("s3://bucket/some/prefix/") == ("bucket", "some/prefix")
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    with pytest.raises(ValueError):
        parse_s3_url("s3:///prefix")
    assert isinstance(open_blob_store("", tmp_path / "blobs"), LocalBlobStore)
    chosen = open_blob_store(f"s3://{moto_bucket}/deploy", tmp_path / "unused")
    assert isinstance(chosen, S3BlobStore) and (chosen.bucket, chosen.prefix) == (moto_bucket, "deploy")
    chosen.put_bytes("org-1/x", b"via the environment's endpoint")
    assert object_names(chosen) == ["deploy/org-1/x"]
    assert not (tmp_path / "unused").exists()
    with pytest.raises(ValueError):
        open_blob_store("gs://bucket", tmp_path)

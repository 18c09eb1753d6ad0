"""Which blob store a process uses: ``AFINAR_BLOB_URL`` (``s3://bucket/prefix``), or a local
directory when it is empty (the default, ``<data_dir>/blobs``)."""

from __future__ import annotations

from pathlib import Path

from afinar.blobs.local import BlobStore, LocalBlobStore


def open_blob_store(url: str, local_root: Path) -> BlobStore:
    """The store ``url`` names; ``local_root`` when it names none. boto3 is imported only for S3."""
    if not url:
        return LocalBlobStore(local_root)
    if url.startswith("s3://"):
        from afinar.blobs.s3 import S3BlobStore

        return S3BlobStore.from_url(url)
    raise ValueError(f"AFINAR_BLOB_URL must be empty or s3://bucket/prefix, not {url!r}")

"""Throughput of encryption at rest: the blob store with and without the AES-GCM stream.

    .venv/bin/python bench/blob_crypto.py [--mib 256]

Writes ``--mib`` MiB of random bytes through ``LocalBlobStore.put_stream`` (plaintext, as before
encryption) and through ``SealedBlobs.put_stream`` (encrypted with an organisation's data key),
then reads both back, in 1 MiB chunks as an upload/download does; prints MiB/s and the peak
RSS growth (constant memory: it should stay near one chunk, not the blob size).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from afinar.config import Settings
from afinar.services.container import Container
from afinar.services.orgs import create_org

CHUNK = 1024 * 1024


def chunks(total: int, block: bytes) -> Iterator[bytes]:
    for _ in range(total):
        yield block


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    args = ap.parse_args()
    block = os.urandom(CHUNK)
    with tempfile.TemporaryDirectory() as tmp:
        c = Container(Settings(data_dir=Path(tmp), master_key_file=None))
        c.migrate()
        org, _ = create_org(c.db, "bench")
        c.keys.data_key(org.id)
        base = rss_mib()
        rows = []
        for label, put, read in (
            ("plain", lambda k: c.blobs.put_stream(k, chunks(args.mib, block)), c.blobs.iter_bytes),
            (
                "sealed",
                lambda k: c.sealed.put_stream(org.id, k, chunks(args.mib, block)),
                lambda k: c.sealed.iter_bytes(org.id, k),
            ),
        ):
            key = f"{org.id}/files/{label}"
            t = time.perf_counter()
            put(key)
            w = time.perf_counter() - t
            t = time.perf_counter()
            n = sum(len(x) for x in read(key))
            r = time.perf_counter() - t
            assert n == args.mib * CHUNK
            rows.append((label, args.mib / w, args.mib / r))
        c.close()
    print(f"{'store':8} {'write MiB/s':>12} {'read MiB/s':>12}   ({args.mib} MiB, 1 MiB chunks)")
    for label, w, r in rows:
        print(f"{label:8} {w:12.0f} {r:12.0f}")
    print(f"peak RSS growth: {rss_mib() - base:.0f} MiB")


if __name__ == "__main__":
    main()

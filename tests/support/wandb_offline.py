"""Read back what ``wandb`` wrote in offline mode: each run's ``run-<id>.wandb`` file under
``<WANDB_DIR>/wandb/offline-run-*``, a LevelDB-style log of protobuf records (the format
``wandb sync`` uploads). wandb ≥ 0.19 no longer ships a Python reader; this one is ~40 lines."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024  # the log is cut in blocks; a record header never straddles one
HEADER = struct.Struct("<IHB")  # crc32, length, kind (1 full, 2 first, 3 middle, 4 last)
FILE_HEADER = struct.Struct("<4sHB")  # b":W&B", magic 0xBEE1, version


@dataclass
class OfflineRun:
    project: str = ""
    entity: str = ""
    name: str = ""
    run_id: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None


def _payloads(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    ident, magic, _version = FILE_HEADER.unpack_from(data)
    assert ident == b":W&B" and magic == 0xBEE1, f"{path} is not a W&B transaction log"
    pos, pending = FILE_HEADER.size, b""
    while pos + HEADER.size <= len(data):
        room = BLOCK - pos % BLOCK
        _crc, length, kind = HEADER.unpack_from(data, pos) if room >= HEADER.size else (0, 0, 0)
        if kind == 0:  # the zero padding at a block's end
            pos += room
            continue
        chunk = data[pos + HEADER.size : pos + HEADER.size + length]
        pos += HEADER.size + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            yield pending


def _key(item: Any) -> str:
    return str(item.key or "/".join(item.nested_key))


def read_run(path: Path) -> OfflineRun:
    from wandb.proto import wandb_internal_pb2 as pb

    run = OfflineRun()
    for payload in _payloads(path):
        rec = pb.Record()  # type: ignore[attr-defined]  # generated protobuf, no stubs
        rec.ParseFromString(payload)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            run.project, run.entity, run.name, run.run_id = r.project, r.entity, r.display_name, r.run_id
            run.tags = list(r.tags)
            run.config.update({_key(i): json.loads(i.value_json) for i in r.config.update})
        elif kind == "config":
            run.config.update({_key(i): json.loads(i.value_json) for i in rec.config.update})
        elif kind == "history":
            run.history.append({_key(i): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            run.summary.update({_key(i): json.loads(i.value_json) for i in rec.summary.update if _key(i)})
        elif kind == "exit":
            run.exit_code = rec.exit.exit_code
    return run


def offline_runs(wandb_dir: Path) -> list[OfflineRun]:
    """Every offline run under ``wandb_dir`` (what ``WANDB_DIR`` was), oldest directory first."""
    return [read_run(f) for f in sorted(wandb_dir.glob("wandb/offline-run-*/run-*.wandb"))]

"""``afinar admin export``: one zip with everything an organisation owns.

Members, each written streamed (constant memory) and hashed while written:

- ``<kind>.jsonl`` for every kind of ``store/export.KINDS`` (projects, keys without hashes, users,
  files metadata incl. tombstones, jobs, events, checkpoints, models, usage, evals, runs, output
  items, the audit log, …) and ``organization.json`` (the organisation row with its settings);
- ``files/<file id>``: the content of every live file, read through the files service (decrypted);
- ``models/<name>.zip``: each fine-tuned model's PEFT adapter archive with its model card, from
  the models service's ``export_archive`` (the card shaped by the caller's ``card``, the wire
  object of ``api/schemas/models.py``);
- ``manifest.json`` last: organisation, export time, counts, and ``bytes``/``sha256`` of every
  other member.

The archive holds plaintext: it is written with mode 0600 to a temporary name and renamed into
place when complete. The export is audited (``organization.exported``).
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from afinar.errors import NotFound
from afinar.services import audit
from afinar.store import export as repo
from afinar.store import orgs as orgs_repo
from afinar.store.db import Database
from afinar.store.files import DELETED

EXPORTED = "organization.exported"
FORMAT = 1


class FileContents(Protocol):
    def content(self, org_id: str, file_id: str) -> Iterable[bytes]: ...


CardBuilder = Callable[[str, dict[str, Any]], dict[str, Any]]  # (model name, published card) -> card


class ModelArchives(Protocol):
    def export_archive(self, org_id: str, name: str, *, card: CardBuilder) -> Iterable[bytes]: ...


@dataclass
class ExportResult:
    path: Path
    manifest: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)


class _Hashing:
    """A writable member that counts and hashes what passes through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.raw.write(data)
        self.sha.update(data)
        self.size += len(data)


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str).encode()


def member_name(model_name: str) -> str:
    return "models/" + "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in model_name) + ".zip"


class Exporter:
    """``export(org_id, out)`` writes one organisation's archive."""

    def __init__(self, *, db: Database, files: FileContents, models: ModelArchives) -> None:
        self.db = db
        self.files = files
        self.models = models

    def export(self, org_id: str, out: Path, *, card: CardBuilder) -> ExportResult:
        """Write the organisation's archive to ``out`` (a .zip); the manifest and anything skipped."""
        return _Export(self, org_id, out, card).run()


class _Export:
    """One run: the members written so far and the row counts."""

    def __init__(self, exporter: Exporter, org_id: str, out: Path, card: CardBuilder) -> None:
        self.db, self.files, self.models = exporter.db, exporter.files, exporter.models
        self.card = card
        self.org_id, self.out = org_id, out
        self.members: dict[str, dict[str, Any]] = {}
        self.counts: dict[str, int] = {}

    def _write(
        self, zf: zipfile.ZipFile, name: str, chunks: Iterable[bytes], *, stored: bool = False
    ) -> None:
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
        info.external_attr = 0o600 << 16
        with zf.open(info, "w", force_zip64=True) as raw:
            h = _Hashing(raw)
            for chunk in chunks:
                h.write(chunk)
        self.members[name] = {"bytes": h.size, "sha256": h.sha.hexdigest()}

    def _jsonl(self, kind: repo.Kind, live_files: list[str], models: list[str]) -> Iterable[bytes]:
        n = 0
        with self.db.session() as s:
            for row in repo.rows(s, kind, self.org_id):
                n += 1
                if kind.name == "files" and row.get("deleted_at") is None and row.get("status") != DELETED:
                    live_files.append(row["id"])
                if kind.name == "models":
                    models.append(row["id"])
                yield _json(row) + b"\n"
        self.counts[kind.name] = n

    def run(self) -> ExportResult:
        with self.db.session() as s:
            org = orgs_repo.get_org(s, self.org_id)
            if org is None:
                raise NotFound(f"No organization found with id '{self.org_id}'.", param="organization")
            org_row = repo.as_dict(org)
        exported_at = int(self.db.now())
        skipped: list[dict[str, str]] = []
        self.out.parent.mkdir(parents=True, exist_ok=True)
        partial = self.out.with_name(self.out.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w") as zf:
                self._write(zf, "organization.json", [_json(org_row)])
                live_files: list[str] = []
                models: list[str] = []
                for kind in repo.KINDS:
                    self._write(zf, f"{kind.name}.jsonl", self._jsonl(kind, live_files, models))
                for file_id in live_files:
                    try:
                        content = self.files.content(self.org_id, file_id)
                    except NotFound:  # deleted while exporting
                        skipped.append({"member": f"files/{file_id}", "reason": "deleted meanwhile"})
                        continue
                    self._write(zf, f"files/{file_id}", content)
                for name in models:
                    try:
                        archive = self.models.export_archive(self.org_id, name, card=self.card)
                    except Exception as exc:  # a model whose adapter is gone is named, not fatal
                        skipped.append({"member": member_name(name), "reason": str(exc)[:200]})
                        continue
                    self._write(zf, member_name(name), archive, stored=True)
                manifest = {
                    "object": "afinar.export",
                    "format": FORMAT,
                    "organization": {"id": org_row["id"], "name": org_row["name"], "slug": org_row["slug"]},
                    "exported_at": exported_at,
                    "counts": {
                        **self.counts,
                        "file_contents": sum(1 for m in self.members if m.startswith("files/")),
                        "model_archives": sum(1 for m in self.members if m.startswith("models/")),
                    },
                    "members": dict(self.members),
                    "skipped": skipped,
                }
                zf.writestr(
                    zipfile.ZipInfo("manifest.json", date_time=(1980, 1, 1, 0, 0, 0)),
                    json.dumps(manifest, indent=2, sort_keys=True),
                    compress_type=zipfile.ZIP_DEFLATED,
                )
            os.replace(partial, self.out)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        counts = manifest["counts"]
        audit.record(self.db, EXPORTED, self.org_id, self.org_id, counts=counts)
        return ExportResult(self.out, manifest, skipped)

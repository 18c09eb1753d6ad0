"""``afinar admin export``: one archive with every row, file and adapter of an organisation."""

from __future__ import annotations

import hashlib
import io
import json
import stat
import zipfile
from pathlib import Path
from typing import Any

import openai
from sqlalchemy import select
from typer.testing import CliRunner

from afinar.services.orgs import create_org
from afinar.store.tables import AuditLog
from tests.support.data import chat_file
from tests.support.tiny_model import TINY
from tests.support.worker import run_worker


def jsonl(zf: zipfile.ZipFile, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in zf.read(name).splitlines()]


def test_export_after_a_job_round_trips_files_and_hashes(
    client: openai.OpenAI, container: Any, settings: Any, tmp_path: Path, http: Any
) -> None:
    train = chat_file(tmp_path / "train.jsonl", 10)
    fid = client.files.create(file=train.open("rb"), purpose="fine-tune").id
    gone = client.files.create(file=chat_file(tmp_path / "gone.jsonl", 3).open("rb"), purpose="fine-tune").id
    client.files.delete(gone)
    job = client.fine_tuning.jobs.create(model=TINY, training_file=fid, hyperparameters={"n_epochs": 1})
    run_worker(container)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded" and job.fine_tuned_model
    # Another organisation's data must not leak into the archive.
    _, other_key = create_org(container.db, "other")
    other = openai.OpenAI(base_url="http://testserver/v1", api_key=other_key, http_client=http, max_retries=0)
    foreign = other.files.create(file=chat_file(tmp_path / "f.jsonl", 2).open("rb"), purpose="fine-tune").id

    from afinar.cli.main import app

    out = tmp_path / "export" / "org.zip"
    env = {
        "AFINAR_DATA_DIR": str(settings.data_dir),
        "AFINAR_CATALOG_FILE": str(settings.catalog_file),
        "COLUMNS": "200",
    }
    result = CliRunner().invoke(app, ["admin", "export", job.organization_id, "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600

    with zipfile.ZipFile(out) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        names = set(zf.namelist()) - {"manifest.json"}
        assert names == set(manifest["members"])
        for name, meta in manifest["members"].items():
            data = zf.read(name)
            assert (len(data), hashlib.sha256(data).hexdigest()) == (meta["bytes"], meta["sha256"]), name
        assert manifest["organization"]["id"] == job.organization_id
        assert manifest["skipped"] == []

        # The known file round-trips byte for byte; the deleted one is a tombstone without content.
        assert zf.read(f"files/{fid}") == train.read_bytes()
        assert f"files/{gone}" not in names and f"files/{foreign}" not in names
        files = {f["id"]: f for f in jsonl(zf, "files.jsonl")}
        assert set(files) == {fid, gone, *job.result_files} and manifest["counts"]["files"] == len(files)
        assert (
            files[gone]["status"] == "deleted" and files[gone]["deleted_at"] and "blob_key" not in files[fid]
        )

        jobs = jsonl(zf, "jobs.jsonl")
        assert [j["id"] for j in jobs] == [job.id] and jobs[0]["status"] == "succeeded"
        assert manifest["counts"]["events"] == len(jsonl(zf, "events.jsonl")) > 0
        assert manifest["counts"]["checkpoints"] >= 1 and manifest["counts"]["usage"] >= 1
        keys = jsonl(zf, "api_keys.jsonl")
        assert keys and all("key_hash" not in k for k in keys)
        assert b"sk-test-key" not in b"".join(zf.read(n) for n in names if n.endswith(".jsonl"))
        audit_types = {e["type"] for e in jsonl(zf, "audit_logs.jsonl")}
        assert {"file.uploaded", "file.deleted", "fine_tuning.job.created"} <= audit_types

        [model] = jsonl(zf, "models.jsonl")
        assert model["id"] == job.fine_tuned_model and "adapter_path" not in model
        model_zip = zipfile.ZipFile(io.BytesIO(zf.read(manifest_model_member(manifest))))
        assert {"adapter_config.json", "model_card.json"} <= set(model_zip.namelist())
        card = json.loads(model_zip.read("model_card.json"))
        assert card["base_model"] == TINY or TINY in json.dumps(card)

    # The export itself is audited.
    with container.db.session() as s:
        entries = s.scalars(select(AuditLog).where(AuditLog.type == "organization.exported")).all()
        assert [(e.org_id, e.details["counts"]["jobs"]) for e in entries] == [(job.organization_id, 1)]


def manifest_model_member(manifest: dict[str, Any]) -> str:
    [name] = [m for m in manifest["members"] if m.startswith("models/")]
    return name

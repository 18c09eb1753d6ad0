"""Deleting a file leaves a content-free tombstone; retention per organisation sweeps old files into
tombstones, never one a running job or eval run still uses."""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path
from typing import Any

import openai
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from afinar.clock import FixedClock
from afinar.store.tables import AuditLog, File
from afinar.worker.loop import Worker
from tests.support.cli import admin, embedded_env
from tests.support.data import chat_file
from tests.support.evals import EXACT_MATCH, make_eval
from tests.support.tiny_model import TINY

DAY = 86400


def upload(client: openai.OpenAI, tmp_path: Path, name: str) -> str:
    return client.files.create(file=chat_file(tmp_path / name, 3).open("rb"), purpose="fine-tune").id


def row(container: Any, file_id: str) -> File:
    with container.db.session() as s:
        found = s.scalar(select(File).where(File.id == file_id))
        assert found is not None
        s.expunge(found)
        return found


def test_deleted_file_is_a_content_free_tombstone(
    client: openai.OpenAI, container: Any, tmp_path: Path
) -> None:
    fid = upload(client, tmp_path, "secret-plans.jsonl")
    before = client.files.retrieve(fid)
    blob_key = row(container, fid).blob_key
    assert container.blobs.path(blob_key).exists()
    job = client.fine_tuning.jobs.create(model=TINY, training_file=fid)

    deleted = client.files.delete(fid)
    assert deleted.deleted and deleted.id == fid

    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(fid)
    with pytest.raises(openai.NotFoundError):
        client.files.content(fid)
    with pytest.raises(openai.NotFoundError):
        client.files.delete(fid)
    assert fid not in {f.id for f in client.files.list()}
    assert not container.blobs.path(blob_key).exists()

    tomb = row(container, fid)
    assert tomb.status == "deleted" and tomb.deleted_at is not None
    assert (tomb.bytes, tomb.purpose, tomb.created_at) == (before.bytes, "fine-tune", before.created_at)
    assert tomb.filename == "" and tomb.sha256 == "" and tomb.blob_key == ""
    # History that names the file stays readable.
    assert client.fine_tuning.jobs.retrieve(job.id).training_file == fid


def test_retention_sweeps_old_files_but_waits_for_running_work(
    client: openai.OpenAI, container: Any, tmp_path: Path
) -> None:
    old = upload(client, tmp_path, "old.jsonl")
    busy = upload(client, tmp_path, "busy.jsonl")
    job = client.fine_tuning.jobs.create(model=TINY, training_file=busy)
    org = job.organization_id
    clock = FixedClock(time.time() + 31 * DAY)
    container.clock = clock

    assert container.retention.sweep() == []  # no retention set, no default: keep forever
    container.retention.set_days(org, 30)
    assert container.retention.sweep() == [old]  # the job still validating holds "busy"
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(old)
    assert client.files.retrieve(busy).id == busy

    client.fine_tuning.jobs.cancel(job.id)
    assert Worker(container).sweep_if_due() == [busy]
    assert client.fine_tuning.jobs.retrieve(job.id).training_file == busy

    fresh = upload(client, tmp_path, "fresh.jsonl")
    clock.set(time.time() + 29 * DAY)
    assert container.retention.sweep() == []  # not 30 days old yet
    clock.set(time.time() + 100 * DAY)
    container.retention.set_days(org, 0)  # off: forever, whatever the default
    assert container.retention.sweep() == []
    assert client.files.retrieve(fresh).id == fresh

    with container.db.session() as s:
        entries = s.scalars(select(AuditLog).where(AuditLog.org_id == org).order_by(AuditLog.seq)).all()
        kinds = [(e.type, e.details) for e in entries]
    assert ("file.deleted", {"id": old, "reason": "retention"}) in kinds
    changes = [d["changes"] for t, d in kinds if t == "organization.settings.updated"]
    assert changes == [{"file_retention_days": 30}, {"file_retention_days": 0}]


def test_operator_default_applies_to_organisations_without_a_setting(
    client: openai.OpenAI, container: Any, tmp_path: Path
) -> None:
    fid = upload(client, tmp_path, "a.jsonl")
    container.settings.file_retention_days = 7
    container.clock = FixedClock(time.time() + 6 * DAY)
    assert container.retention.sweep() == []
    container.clock = FixedClock(time.time() + 8 * DAY)
    assert container.retention.sweep() == [fid]


def test_files_of_active_eval_runs_are_in_use() -> None:
    from afinar.store.retention import _file_ids

    source = {"type": "jsonl", "source": {"type": "file_id", "id": "file-abc"}}
    criteria = [{"type": "sql_execution", "database_file_id": "file-db", "name": "x"}]
    assert set(_file_ids(source)) | set(_file_ids(criteria)) == {"file-abc", "file-db"}


@pytest.mark.parametrize("value", [-1, 1.5, "30", True, 40000])
def test_bad_retention_values_are_refused(value: Any) -> None:
    from afinar.api.schemas.settings import parse_days
    from afinar.errors import InvalidRequest

    with pytest.raises(InvalidRequest):
        parse_days(value)


def test_cli_sets_retention(tmp_path: Path, tiny_catalog: Path) -> None:
    from afinar.cli.main import app

    env = embedded_env(tmp_path / "data", tiny_catalog)
    run = partial(admin, env)

    made = json.loads(run("orgs", "create", "Acme", "--json"))
    assert json.loads(run("orgs", "retention", "acme", "30", "--json"))["file_retention_days"] == 30
    assert "kept forever" in run("orgs", "retention", made["id"], "off")
    bad = CliRunner().invoke(app, ["admin", "orgs", "retention", "acme", "-3"], env=env)
    assert bad.exit_code != 0


def test_retention_is_part_of_the_organisation_settings(http: Any, container: Any) -> None:
    auth = {"authorization": "Bearer sk-test-key"}
    url = "/v1/afinar/organization/settings"
    assert http.get(url, headers=auth).json()["file_retention_days"] is None
    r = http.post(url, headers=auth, json={"file_retention_days": 14})
    assert r.status_code == 200 and r.json()["file_retention_days"] == 14
    bad = http.post(url, headers=auth, json={"file_retention_days": -2})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "file_retention_days"
    assert (
        http.post(url, headers=auth, json={"file_retention_days": None}).json()["file_retention_days"] is None
    )


def test_a_queued_eval_run_keeps_its_data_file(client: openai.OpenAI, container: Any) -> None:
    lines = [{"item": {"q": str(i)}, "sample": {"output_text": "a"}} for i in range(2)]
    data = "\n".join(json.dumps(x) for x in lines).encode()
    fid = client.files.create(file=("items.jsonl", data), purpose="evals").id
    ev = make_eval(client, [{**EXACT_MATCH, "reference": "a"}], name="e", item_schema={"type": "object"})
    source = {"type": "jsonl", "source": {"type": "file_id", "id": fid}}
    run = client.evals.runs.create(ev.id, data_source=source)  # type: ignore[arg-type]
    assert run.status == "queued"
    container.retention.set_days(org_of(container), 1)
    container.clock = FixedClock(time.time() + 2 * DAY)
    assert container.retention.sweep() == []
    client.evals.runs.cancel(run.id, eval_id=ev.id)
    assert container.retention.sweep() == [fid]


def org_of(container: Any) -> str:
    from afinar.store.tables import Organization

    with container.db.session() as s:
        org = s.scalar(select(Organization).where(Organization.name == container.settings.default_org_name))
        assert org is not None
        return org.id

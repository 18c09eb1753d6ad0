"""The audit log in the shape of ``client.admin.organization.audit_logs.list``: who, what, when."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.admin.organization import AuditLogListResponse
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from afinar.services import audit
from afinar.store.tables import FineTunedModel
from tests.support.data import chat_file
from tests.support.sdk import sdk
from tests.support.tiny_model import TINY


def detail(entry: AuditLogListResponse) -> dict[str, Any]:
    value = entry.model_dump(by_alias=True)[entry.type]
    assert isinstance(value, dict)
    return value


def test_actions_are_recorded_with_actor_and_time(
    admin: openai.OpenAI, project: str, container: Any, http: Any, tmp_path: Path
) -> None:
    t0 = int(time.time())
    made = admin.admin.organization.projects.service_accounts.create(project, name="bot")
    assert made.api_key is not None
    bot = sdk(http, made.api_key.value)
    fid = bot.files.create(file=chat_file(tmp_path / "t.jsonl", 3).open("rb"), purpose="fine-tune").id
    bot.files.content(fid).read()
    job = bot.fine_tuning.jobs.create(model=TINY, training_file=fid)
    bot.fine_tuning.jobs.cancel(job.id)
    name = f"ft:{TINY}:default::abcdefgh"
    with container.db.session() as s:
        s.add(
            FineTunedModel(
                id=name,
                org_id=job.organization_id,
                project_id=project,
                job_id=job.id,
                base_model=TINY,
                owned_by="default",
                created_at=t0,
                adapter_path=str(tmp_path / "x"),
            )
        )
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "adapter_config.json").write_text("{}")
    got = http.get(f"/v1/afinar/models/{name}/adapter", headers={"authorization": f"Bearer {bot.api_key}"})
    assert got.status_code == 200 and got.content[:2] == b"PK"
    bot.models.delete(name)
    bot.files.delete(fid)
    admin.admin.organization.projects.api_keys.delete(made.api_key.id, project_id=project)

    entries = list(admin.admin.organization.audit_logs.list(limit=100))
    assert all(isinstance(e, AuditLogListResponse) for e in entries)
    assert [e.type for e in reversed(entries)] == [
        "api_key.created",  # the bootstrap key, when the organisation was made
        "project.created",
        "service_account.created",
        "api_key.created",
        "file.uploaded",
        "file.downloaded",
        "fine_tuning.job.created",
        "fine_tuning.job.cancelled",
        "model.downloaded",
        "model.deleted",
        "file.deleted",
        "api_key.deleted",
    ]
    by_type = {e.type: e for e in reversed(entries)}  # the newest of each type
    for kind in (
        "file.uploaded",
        "file.downloaded",
        "fine_tuning.job.created",
        "fine_tuning.job.cancelled",
        "model.downloaded",
        "model.deleted",
        "file.deleted",
    ):
        e = by_type[kind]
        assert e.actor is not None and e.actor.type == "api_key" and e.actor.api_key is not None
        assert e.actor.api_key.id == made.api_key.id and e.actor.api_key.type == "service_account"
        assert e.actor.api_key.service_account is not None and e.actor.api_key.service_account.id == made.id
        assert e.project is not None and e.project.id == project and e.project.name == "research"
        assert t0 <= e.effective_at <= time.time() + 1
    uploaded = detail(by_type["file.uploaded"])
    assert (
        uploaded["id"] == fid and uploaded["data"]["purpose"] == "fine-tune" and uploaded["data"]["bytes"] > 0
    )
    assert detail(by_type["model.deleted"])["id"] == name
    assert by_type["api_key.deleted"].api_key_deleted is not None
    assert by_type["api_key.deleted"].api_key_deleted.id == made.api_key.id
    assert by_type["api_key.created"].api_key_created is not None
    assert by_type["api_key.created"].api_key_created.id == made.api_key.id
    key_actor = by_type["api_key.deleted"].actor
    assert key_actor is not None and key_actor.api_key is not None
    assert key_actor.api_key.id != made.api_key.id  # the admin key did it
    for e in entries:  # ids, types and sizes; never content
        assert "Question" not in str(e.model_dump()) and "sk-afinar" not in str(e.model_dump())


def test_filters_and_pages(admin: openai.OpenAI, project: str, bot: openai.OpenAI, tmp_path: Path) -> None:
    logs = admin.admin.organization.audit_logs
    fid = bot.files.create(file=chat_file(tmp_path / "t.jsonl", 3).open("rb"), purpose="fine-tune").id
    admin.admin.organization.projects.create(name="other")
    assert [e.type for e in logs.list(event_types=["file.uploaded"])] == ["file.uploaded"]  # type: ignore[list-item]
    assert {e.type for e in logs.list(resource_ids=[fid])} == {"file.uploaded"}
    in_project = [e.type for e in logs.list(project_ids=[project])]
    assert "file.uploaded" in in_project and "project.created" in in_project
    actor = next(iter(logs.list(event_types=["file.uploaded"]))).actor  # type: ignore[list-item]
    assert actor is not None and actor.api_key is not None and actor.api_key.id is not None
    assert [e.type for e in logs.list(actor_ids=[actor.api_key.id])] == ["file.uploaded"]
    assert list(logs.list(effective_at={"gt": int(time.time()) + 60})) == []

    first = logs.list(limit=2)
    assert len(first.data) == 2 and first.has_more
    rest = logs.list(limit=100, after=first.data[-1].id).data
    everything = logs.list(limit=100).data
    assert [e.id for e in first.data + rest] == [e.id for e in everything]
    assert [e.id for e in logs.list(before=rest[0].id, limit=100).data] == [e.id for e in first.data]


def test_the_chain_verifies_and_the_table_is_append_only(admin: openai.OpenAI, container: Any) -> None:
    admin.admin.organization.projects.create(name="a")
    admin.admin.organization.projects.create(name="b")
    org_id = _org_id(container)
    assert audit.verify(container.db, org_id) == (3, None)  # the bootstrap key and two projects
    for sql in ("UPDATE audit_logs SET type = 'x'", "DELETE FROM audit_logs"):
        with pytest.raises(DatabaseError), container.db.session() as s:
            s.execute(text(sql))
    # A forged row (as with direct access to the database file) breaks the chain.
    with container.db.session() as s:
        s.execute(
            text(
                "INSERT INTO audit_logs (id, org_id, type, effective_at, details, prev_hash, hash) "
                "VALUES ('audit_log-forged', :org, 'project.archived', 0, '{}', :prev, 'f00')"
            ),
            {"org": org_id, "prev": "0" * 64},
        )
    assert audit.verify(container.db, org_id) == (3, "audit_log-forged")


def test_concurrent_writers_keep_one_chain(container: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    org_id = _org_id(container)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: audit.record(container.db, "file.deleted", org_id, f"file-{i}"), range(24)))
    assert audit.verify(container.db, org_id) == (25, None)


def _org_id(container: Any) -> str:
    from afinar.services.orgs import authenticate

    return authenticate(container.db, "sk-test-key").org_id

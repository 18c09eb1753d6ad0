"""Projects (create, list, retrieve, update, archive) and what a project key sees: its project only."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.admin.organization import Project

from afinar.store.tables import FineTunedModel
from tests.support.data import chat_file
from tests.support.sdk import sdk
from tests.support.tiny_model import TINY


def test_project_lifecycle(admin: openai.OpenAI, bot: openai.OpenAI) -> None:
    projects = admin.admin.organization.projects
    made = projects.create(name="labs")
    assert isinstance(made, Project) and made.object == "organization.project" and made.status == "active"
    assert projects.retrieve(made.id).name == "labs"
    assert projects.update(made.id, name="labs-2").name == "labs-2"
    names = [p.name for p in projects.list()]
    assert names[0] == "Default project" and names[-1] == "labs-2"  # creation order

    page = projects.list(limit=1)
    assert len(page.data) == 1 and page.has_more
    assert [p.id for p in projects.list(limit=1, after=page.data[0].id).data] != [page.data[0].id]

    archived = projects.archive(made.id)
    assert archived.status == "archived" and archived.archived_at is not None
    assert made.id not in [p.id for p in projects.list()]
    assert made.id in [p.id for p in projects.list(include_archived=True)]
    with pytest.raises(openai.BadRequestError):  # no new keys in an archived project
        projects.service_accounts.create(made.id, name="late")


def test_default_project_cannot_be_archived(admin: openai.OpenAI) -> None:
    default = admin.admin.organization.projects.list().data[0]
    with pytest.raises(openai.BadRequestError) as err:
        admin.admin.organization.projects.archive(default.id)
    assert err.value.code == "cannot_archive_default_project"


def test_keys_of_an_archived_project_are_refused(
    admin: openai.OpenAI, project: str, bot: openai.OpenAI
) -> None:
    bot.files.list()
    admin.admin.organization.projects.archive(project)
    with pytest.raises(openai.PermissionDeniedError) as err:
        bot.files.list()
    assert err.value.code == "project_archived"


def test_a_project_key_sees_only_its_project(
    admin: openai.OpenAI, project: str, bot: openai.OpenAI, container: Any, tmp_path: Path
) -> None:
    mine = admin.files.create(file=chat_file(tmp_path / "a.jsonl", 3).open("rb"), purpose="fine-tune").id
    theirs = bot.files.create(file=chat_file(tmp_path / "b.jsonl", 3).open("rb"), purpose="fine-tune").id
    assert [f.id for f in admin.files.list()] == [mine]
    assert [f.id for f in bot.files.list()] == [theirs]
    for call in (
        lambda: bot.files.retrieve(mine),
        lambda: bot.files.content(mine),
        lambda: bot.files.delete(mine),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    with pytest.raises(openai.BadRequestError) as bad:  # another project's file cannot train here
        bot.fine_tuning.jobs.create(model=TINY, training_file=mine)
    assert bad.value.param == "training_file"

    job = admin.fine_tuning.jobs.create(model=TINY, training_file=mine)
    own = bot.fine_tuning.jobs.create(model=TINY, training_file=theirs)
    assert [j.id for j in bot.fine_tuning.jobs.list()] == [own.id]
    with pytest.raises(openai.NotFoundError):
        bot.fine_tuning.jobs.retrieve(job.id)
    with pytest.raises(openai.NotFoundError):
        bot.fine_tuning.jobs.cancel(job.id)
    assert admin.fine_tuning.jobs.retrieve(job.id).status == "validating_files"

    # A fine-tuned model of the default project: listed and usable there, invisible to the project.
    name = f"ft:{TINY}:default::abcdefgh"
    with container.db.session() as s:
        s.add(
            FineTunedModel(
                id=name,
                org_id=job.organization_id,
                project_id=admin_project(admin),
                job_id=job.id,
                base_model=TINY,
                owned_by="default",
                created_at=int(time.time()),
                adapter_path=str(tmp_path),
            )
        )
    assert name in [m.id for m in admin.models.list()]
    assert name not in [m.id for m in bot.models.list()]
    with pytest.raises(openai.NotFoundError):
        bot.models.retrieve(name)
    with pytest.raises(openai.NotFoundError):
        bot.models.delete(name)
    with pytest.raises(openai.NotFoundError):
        bot.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}], max_tokens=1)


def test_rows_without_a_project_belong_to_the_default_project(
    admin: openai.OpenAI, bot: openai.OpenAI, container: Any, tmp_path: Path
) -> None:
    from afinar.services.orgs import authenticate

    org = authenticate(container.db, "sk-test-key").org_id
    row = container.files.create(org, "legacy.jsonl", "fine-tune", [b"{}\n"], project_id=None)
    assert row.id in [f.id for f in admin.files.list()]
    assert row.id not in [f.id for f in bot.files.list()]


def test_admin_key_without_project_acts_in_the_default_project(
    admin: openai.OpenAI, http: Any, tmp_path: Path
) -> None:
    ops = sdk(http, admin.admin.organization.admin_api_keys.create(name="ops").value)
    fid = ops.files.create(file=chat_file(tmp_path / "o.jsonl", 3).open("rb"), purpose="fine-tune").id
    assert fid in [f.id for f in admin.files.list()]


def admin_project(admin: openai.OpenAI) -> str:
    return admin.admin.organization.projects.list().data[0].id


def test_the_scope_filter_follows_each_scope(container: Any) -> None:
    """The ORM filter is built per statement: alternating scopes never reuse another's criteria."""
    from afinar.services.orgs import authenticate
    from afinar.store import files as files_repo
    from afinar.store.admin import ProjectScope, scoped

    org = authenticate(container.db, "sk-test-key").org_id
    a = container.files.create(org, "a.jsonl", "fine-tune", [b"{}\n"], project_id="proj_a")
    b = container.files.create(org, "b.jsonl", "fine-tune", [b"{}\n"], project_id="proj_b")
    for _ in range(2):
        for scope, expected in (
            (ProjectScope("proj_a", False), [a.id]),
            (ProjectScope("proj_b", True), [b.id]),
            (None, [b.id, a.id]),
        ):
            with scoped(scope), container.db.session() as s:
                page = files_repo.list_page(s, org, after=None, limit=10, desc=True, purpose=None)
                assert [f.id for f in page.items] == expected

"""Roles: owner and member act in their project; a reader reads and calls models only; ``none`` nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.data import chat_file
from tests.support.sdk import sdk
from tests.support.tiny_model import TINY


@pytest.fixture
def reader(admin: openai.OpenAI, project: str, http: Any) -> openai.OpenAI:
    """A service-account key of ``project`` restricted to ``api.all.read``."""
    made = admin.admin.organization.projects.service_accounts.create(project, name="dashboards")
    assert made.api_key is not None
    key = admin.admin.organization.projects.api_keys.update(
        made.api_key.id, project_id=project, scopes=["api.all.read"]
    )
    assert key.model_dump().get("scopes") == ["api.all.read"]
    return sdk(http, made.api_key.value)


def test_a_reader_reads_but_changes_nothing(
    reader: openai.OpenAI, bot: openai.OpenAI, tmp_path: Path
) -> None:
    fid = bot.files.create(file=chat_file(tmp_path / "t.jsonl", 3).open("rb"), purpose="fine-tune").id
    job = bot.fine_tuning.jobs.create(model=TINY, training_file=fid)
    assert [f.id for f in reader.files.list()] == [fid]
    assert reader.files.retrieve(fid).id == fid and reader.files.content(fid).content
    assert reader.fine_tuning.jobs.retrieve(job.id).id == job.id
    assert reader.models.list().data
    denied = [
        lambda: reader.files.create(file=chat_file(tmp_path / "r.jsonl", 3).open("rb"), purpose="fine-tune"),
        lambda: reader.files.delete(fid),
        lambda: reader.fine_tuning.jobs.create(model=TINY, training_file=fid),
        lambda: reader.fine_tuning.jobs.cancel(job.id),
        lambda: reader.fine_tuning.jobs.pause(job.id),
        lambda: reader.models.delete(f"ft:{TINY}:default::abcdefgh"),
    ]
    for call in denied:
        with pytest.raises(openai.PermissionDeniedError) as err:
            call()
        assert err.value.code == "insufficient_permissions"
    assert bot.fine_tuning.jobs.retrieve(job.id).status == "validating_files"  # nothing changed
    assert bot.files.retrieve(fid).id == fid


def test_a_reader_may_call_models(reader: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):  # got past the role check to the model lookup
        reader.chat.completions.create(
            model="ft:nope:x::abcdefgh", messages=[{"role": "user", "content": "hi"}]
        )


def test_scopes_back_to_all_restore_the_owner_role(admin: openai.OpenAI, project: str, http: Any) -> None:
    made = admin.admin.organization.projects.service_accounts.create(project, name="b")
    assert made.api_key is not None
    keys = admin.admin.organization.projects.api_keys
    keys.update(made.api_key.id, project_id=project, scopes=["api.all.read"])
    with pytest.raises(openai.PermissionDeniedError):
        sdk(http, made.api_key.value).files.delete("file-x")
    keys.update(made.api_key.id, project_id=project, scopes=[])
    with pytest.raises(openai.NotFoundError):
        sdk(http, made.api_key.value).files.delete("file-x")


def test_service_account_role_and_role_none(admin: openai.OpenAI, project: str) -> None:
    accounts = admin.admin.organization.projects.service_accounts
    bare = accounts.create(project, name="bare", create_service_account_only=True)
    assert bare.role == "none" and bare.api_key is None
    with pytest.raises(openai.BadRequestError):
        accounts.api_keys.create(bare.id, project_id=project)
    assert accounts.update(bare.id, project_id=project, role="owner").role == "owner"
    assert accounts.api_keys.create(bare.id, project_id=project).value
    assert [a.name for a in accounts.list(project)] == ["bare"]


def test_user_roles(admin: openai.OpenAI, project: str, container: Any, http: Any) -> None:
    """Org role reader caps a user's keys at reader; removing the user from the project revokes them."""
    org = admin.admin.organization
    org_id = a_org(container)
    ana = container.users.add_user(org_id, "Ana@Example.com", name="Ana", role="reader")
    member = org.projects.users.create(project, user_id=ana.id, role="member")
    assert (member.id, member.role, member.email) == (ana.id, "member", "ana@example.com")
    _, secret = container.api_keys.create_key(
        org_id, kind="project", name="ana", project_id=project, owner_type="user", owner_id=ana.id
    )
    ana_sdk = sdk(http, secret)
    ana_sdk.files.list()
    with pytest.raises(openai.PermissionDeniedError):
        ana_sdk.files.delete("file-x")
    assert org.users.update(ana.id, role="owner").role == "owner"
    with pytest.raises(openai.NotFoundError):  # now a member: allowed, and the file does not exist
        ana_sdk.files.delete("file-x")
    key = org.projects.api_keys.list(project_id=project).data[0]
    assert (
        key.owner.type == "user" and key.owner.user is not None and key.owner.user.email == "ana@example.com"
    )

    user = org.users.retrieve(ana.id)
    assert user.projects is not None and [(p.id, p.role) for p in user.projects.data] == [(project, "member")]
    assert [u.id for u in org.users.list(emails=["ana@example.com"])] == [ana.id]
    assert org.projects.users.update(ana.id, project_id=project, role="owner").role == "owner"
    assert [u.id for u in org.projects.users.list(project)] == [ana.id]
    org.projects.users.delete(ana.id, project_id=project)
    with pytest.raises(openai.AuthenticationError):
        ana_sdk.files.list()
    org.users.delete(ana.id)
    with pytest.raises(openai.NotFoundError):
        org.users.retrieve(ana.id)


def a_org(container: Any) -> str:
    from afinar.services.orgs import authenticate

    return authenticate(container.db, "sk-test-key").org_id

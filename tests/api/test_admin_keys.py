"""API keys through ``client.admin.organization``: shown once, stored hashed, expiring, revocable at once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.admin.organization import AdminAPIKey
from openai.types.admin.organization.projects import ProjectAPIKey

from afinar.store.tables import ApiKey
from tests.support.data import chat_file
from tests.support.sdk import BOOTSTRAP, sdk


def test_admin_key_lifecycle_and_revocation_on_the_next_request(admin: openai.OpenAI, http: Any) -> None:
    keys = admin.admin.organization.admin_api_keys
    made = keys.create(name="ops")
    assert made.value.startswith("sk-afinar-admin-") and made.object == "organization.admin_api_key"
    assert made.redacted_value != made.value and made.value[-4:] in made.redacted_value
    listed = list(keys.list())
    assert [k.id for k in listed][-1] == made.id and all(isinstance(k, AdminAPIKey) for k in listed)
    assert all(getattr(k, "value", None) is None for k in listed)  # the secret is shown once only
    assert keys.retrieve(made.id).name == "ops"

    ops = sdk(http, made.value)
    assert ops.admin.organization.projects.list().data  # an admin key manages the organisation
    ops.admin.organization.admin_api_keys.delete(made.id)  # revoke itself
    with pytest.raises(openai.AuthenticationError):
        ops.admin.organization.projects.list()
    with pytest.raises(openai.NotFoundError):
        keys.retrieve(made.id)


def test_the_last_admin_key_cannot_be_deleted(admin: openai.OpenAI, container: Any) -> None:
    from afinar.services.orgs import authenticate

    own = authenticate(container.db, BOOTSTRAP).key_id
    with pytest.raises(openai.ConflictError) as err:
        admin.admin.organization.admin_api_keys.delete(own)
    assert err.value.code == "last_admin_key"


def test_keys_are_stored_hashed(admin: openai.OpenAI, container: Any) -> None:
    secret = admin.admin.organization.admin_api_keys.create(name="x").value
    with container.db.session() as s:
        rows = [str(getattr(k, c.name)) for k in s.query(ApiKey).all() for c in ApiKey.__table__.columns]
    assert secret not in rows and BOOTSTRAP not in rows


def test_service_account_key_is_returned_once_and_revocable(
    admin: openai.OpenAI, project: str, http: Any, tmp_path: Path
) -> None:
    accounts = admin.admin.organization.projects.service_accounts
    made = accounts.create(project, name="ci-bot")
    assert made.role == "member" and made.api_key is not None
    assert made.api_key.value.startswith("sk-afinar-svcacct-")
    bot = sdk(http, made.api_key.value)
    assert bot.files.create(file=chat_file(tmp_path / "a.jsonl", 3).open("rb"), purpose="fine-tune").id

    keys = admin.admin.organization.projects.api_keys
    listed = list(keys.list(project_id=project))
    assert [k.id for k in listed] == [made.api_key.id] and isinstance(listed[0], ProjectAPIKey)
    assert listed[0].owner.type == "service_account" and listed[0].owner.service_account is not None
    assert listed[0].owner.service_account.id == made.id
    assert "value" not in listed[0].model_dump()

    keys.delete(made.api_key.id, project_id=project)
    with pytest.raises(openai.AuthenticationError):
        bot.files.list()
    more = accounts.api_keys.create(made.id, project_id=project)  # a second key for the account
    sdk(http, more.value).files.list()
    accounts.delete(made.id, project_id=project)  # deleting the account revokes its keys
    with pytest.raises(openai.AuthenticationError):
        sdk(http, more.value).files.list()


def test_expired_keys_are_refused(admin: openai.OpenAI, project: str, http: Any, container: Any) -> None:
    made = admin.admin.organization.projects.service_accounts.create(
        project, name="b", expires_in_seconds=3600
    )
    assert made.api_key is not None and made.api_key.expires_at is not None
    bot = sdk(http, made.api_key.value)
    bot.files.list()
    with container.db.session() as s:
        s.query(ApiKey).filter(ApiKey.id == made.api_key.id).update({"expires_at": int(time.time()) - 1})
    with pytest.raises(openai.AuthenticationError) as err:
        bot.files.list()
    assert "expired" in err.value.message


def test_project_keys_cannot_administer(bot: openai.OpenAI) -> None:
    with pytest.raises(openai.PermissionDeniedError) as err:
        bot.admin.organization.projects.list()
    assert err.value.code == "insufficient_permissions"
    with pytest.raises(openai.PermissionDeniedError):
        bot.admin.organization.audit_logs.list()
    with pytest.raises(openai.PermissionDeniedError):
        bot.admin.organization.usage.costs(start_time=int(time.time()) - 86400)


def test_organization_and_project_headers(
    admin: openai.OpenAI, project: str, bot: Any, http: Any, tmp_path: Path
) -> None:
    org = admin.admin.organization.projects.retrieve(project)  # any admin call: the key is valid
    assert org.id == project
    # Headers naming nothing on this server are ignored (tests/api/test_org_headers.py covers them).
    sdk(http, BOOTSTRAP, **{"OpenAI-Organization": "org-someoneelse"}).files.list()
    sdk(http, BOOTSTRAP, **{"OpenAI-Organization": "default"}).files.list()  # slug or id

    default = next(p.id for p in admin.admin.organization.projects.list() if p.id != project)
    with pytest.raises(openai.AuthenticationError) as err:  # a project key is bound to its project
        sdk(http, bot.api_key, **{"OpenAI-Project": default}).files.list()
    assert err.value.code == "mismatched_project"
    sdk(http, bot.api_key, **{"OpenAI-Project": project}).files.list()

    # An admin key acts in the project the header names (and only in an existing one).
    there = sdk(http, BOOTSTRAP, **{"OpenAI-Project": project})
    fid = there.files.create(file=chat_file(tmp_path / "h.jsonl", 3).open("rb"), purpose="fine-tune").id
    assert [f.id for f in bot.files.list()] == [fid]
    assert fid not in [f.id for f in admin.files.list()]
    assert fid not in [f.id for f in sdk(http, BOOTSTRAP, **{"OpenAI-Project": "proj_nope"}).files.list()]

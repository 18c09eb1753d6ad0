"""OpenAI-Organization / OpenAI-Project headers: the official SDK sends them from ``OPENAI_ORG_ID`` /
``OPENAI_PROJECT_ID`` (or ``OpenAI(organization=..., project=...)``). One that names nothing on this
server is ignored with a warning; one that names an organisation or project the key may not use
is refused, as before.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.data import chat_file

KEY = "sk-test-key"
OPENAI_ORG = "org-aBcDeFgHiJkLmNoPqRsTuVwX"  # shaped like api.openai.com's ids, unknown here
OPENAI_PROJECT = "proj_aBcDeFgHiJkLmNoPqRsTuVwX"


def sdk(http: Any, key: str = KEY, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(
        base_url="http://testserver/v1",
        api_key=key,
        admin_api_key=key,
        http_client=http,
        max_retries=0,
        **kwargs,
    )


def warnings_of(client: openai.OpenAI) -> list[str]:
    """The Afinar-Warning values of a ``files.list`` call that succeeded."""
    raw = client.with_raw_response.files.list()
    raw.parse()
    return raw.headers.get_list("afinar-warning", split_commas=False)


@pytest.fixture
def own(container: Any) -> Any:
    from afinar.services.orgs import authenticate

    return authenticate(container.db, KEY)


@pytest.fixture
def other(container: Any) -> dict[str, str]:
    """Another organisation on this server: its id, slug, default project and key."""
    from afinar.services.orgs import create_org
    from afinar.store.orgs import default_project

    org, key = create_org(container.db, "other shop")
    with container.db.session() as s:
        project = default_project(s, org.id)
        assert project is not None
        return {"id": org.id, "slug": org.slug, "project": project.id, "key": key}


def test_unknown_organization_is_ignored_with_a_warning(
    http: Any, own: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = sdk(http, organization=OPENAI_ORG)
    with caplog.at_level(logging.WARNING, logger="afinar.api"):
        (warning,) = warnings_of(client)
        assert warnings_of(client) == [warning]  # every answer says so ...
    assert warning.startswith(f"OpenAI-Organization header '{OPENAI_ORG}' names no organization")
    assert own.org_id in warning
    logged = [r for r in caplog.records if r.name == "afinar.api" and r.levelno == logging.WARNING]
    assert len(logged) == 1  # ... the server log once per key and value
    assert OPENAI_ORG in logged[0].getMessage() and own.key_id in logged[0].getMessage()


def test_unknown_project_is_ignored_and_the_key_decides(
    http: Any, client: openai.OpenAI, tmp_path: Path
) -> None:
    elsewhere = sdk(http, project=OPENAI_PROJECT)
    fid = elsewhere.files.create(file=chat_file(tmp_path / "t.jsonl", 3).open("rb"), purpose="fine-tune").id
    assert fid in [f.id for f in client.files.list()]  # made in the key's own project
    (warning,) = warnings_of(elsewhere)
    assert warning.startswith(f"OpenAI-Project header '{OPENAI_PROJECT}' names no project")


def test_environment_variables_of_an_openai_account(
    http: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What a user who also calls api.openai.com has in the shell: the SDK sends both headers."""
    monkeypatch.setenv("OPENAI_ORG_ID", OPENAI_ORG)
    monkeypatch.setenv("OPENAI_PROJECT_ID", OPENAI_PROJECT)
    client = sdk(http)
    assert client.organization == OPENAI_ORG and client.project == OPENAI_PROJECT
    assert client.models.list().data
    fid = client.files.create(file=chat_file(tmp_path / "t.jsonl", 3).open("rb"), purpose="fine-tune").id
    assert client.files.retrieve(fid).id == fid
    chat = client.chat.completions.with_raw_response.create(
        model="tiny-llama", messages=[{"role": "user", "content": "hi"}], max_completion_tokens=1
    )
    assert chat.parse().choices
    for found in (chat.headers.get_list("afinar-warning", split_commas=False), warnings_of(client)):
        assert [w.split(" ")[0] for w in found] == ["OpenAI-Organization", "OpenAI-Project"]


def test_own_organization_and_project_answer_without_warning(http: Any, own: Any) -> None:
    for client in (
        sdk(http, organization=own.org_id),
        sdk(http, organization=own.org_slug),
        sdk(http, organization=own.org_id, project=own.project_id),
    ):
        assert warnings_of(client) == []


def test_another_organization_on_this_server_is_refused(http: Any, other: dict[str, str]) -> None:
    with pytest.raises(openai.AuthenticationError) as err:
        sdk(http, organization=other["id"]).files.list()
    assert err.value.code == "mismatched_organization"
    with pytest.raises(openai.AuthenticationError) as err:
        sdk(http, project=other["project"]).files.list()
    assert err.value.code == "mismatched_project"
    with pytest.raises(openai.AuthenticationError) as err:  # an unknown header does not excuse it
        sdk(http, organization=OPENAI_ORG, project=other["project"]).files.list()
    assert err.value.code == "mismatched_project"
    # The other organisation's own key is unaffected by our headers' rules.
    assert warnings_of(sdk(http, other["key"], organization=other["id"])) == []


def test_another_organizations_slug_reads_as_unknown(http: Any, other: dict[str, str]) -> None:
    """A slug is a guessable name: refusing it would tell which organisations this server holds."""
    (warning,) = warnings_of(sdk(http, organization=other["slug"]))
    assert warning.startswith(f"OpenAI-Organization header '{other['slug']}' names no organization")


def test_project_keys_follow_the_same_rule(http: Any, own: Any) -> None:
    admin = sdk(http)
    project = admin.admin.organization.projects.create(name="research").id
    made = admin.admin.organization.projects.service_accounts.create(project, name="bot")
    assert made.api_key is not None
    bot_key = made.api_key.value
    (warning,) = warnings_of(sdk(http, bot_key, project=OPENAI_PROJECT))
    assert f"the API key's project {project} was used" in warning
    assert warnings_of(sdk(http, bot_key, project=project)) == []
    with pytest.raises(openai.AuthenticationError) as err:  # a project of its organisation, not its own
        sdk(http, bot_key, project=own.project_id).files.list()
    assert err.value.code == "mismatched_project"


def test_a_header_value_that_is_not_an_id_is_not_echoed(http: Any) -> None:
    (warning,) = warnings_of(sdk(http, organization="my org (personal)"))
    assert warning.startswith("OpenAI-Organization header names no organization")

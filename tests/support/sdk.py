"""The official ``openai`` SDK on the in-process app, and the administration fixtures built on it.

``admin``: the default organisation's bootstrap key (an admin key, owner) in the default project;
``project``: a second project; ``bot``: a service account of that project (role member). The root
conftest imports the fixtures, so every test folder has them.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest

BOOTSTRAP = "sk-test-key"


def sdk(http: Any, key: str, **headers: str) -> openai.OpenAI:
    """The official SDK with ``key`` as both its API key and its admin key."""
    return openai.OpenAI(
        base_url="http://testserver/v1",
        api_key=key,
        admin_api_key=key,
        http_client=http,
        max_retries=0,
        default_headers=headers or None,
    )


@pytest.fixture
def admin(http: Any, settings: Any) -> openai.OpenAI:
    """The default organisation's bootstrap key: an admin key (owner) acting in the default project."""
    return sdk(http, settings.bootstrap_api_key)


@pytest.fixture
def project(admin: openai.OpenAI) -> str:
    return admin.admin.organization.projects.create(name="research").id


@pytest.fixture
def bot(admin: openai.OpenAI, project: str, http: Any) -> openai.OpenAI:
    """A service account of ``project`` and the SDK with its key (role member)."""
    made = admin.admin.organization.projects.service_accounts.create(project, name="bot")
    assert made.api_key is not None
    return sdk(http, made.api_key.value)

"""``afinar admin``: operator commands on the configured database."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
from typer.testing import CliRunner

from afinar.errors import AuthenticationFailed
from tests.support.cli import admin, embedded_env


def test_orgs_create_prints_its_first_admin_key_once(tmp_path: Path, tiny_catalog: Path) -> None:
    from afinar.cli.main import app
    from afinar.config import Settings
    from afinar.services.container import Container
    from afinar.services.orgs import authenticate

    env = embedded_env(tmp_path / "data", tiny_catalog)
    run = partial(admin, env)

    made = json.loads(run("orgs", "create", "Acme Labs", "--json"))
    assert made["slug"] == "acme-labs" and made["api_key"].startswith("sk-afinar-")
    assert "Admin API key (shown once" in run("orgs", "create", "Beta")
    assert "acme-labs" in run("orgs", "list")
    reader = json.loads(run("keys", "create", "--org", "acme-labs", "--reader", "--json"))
    user = json.loads(
        run("users", "add", "ana@example.com", "--org", made["id"], "--role", "owner", "--json")
    )
    assert user["id"].startswith("user-")
    run("keys", "revoke", reader["id"], "--org", "acme-labs")
    assert "audit chain intact: 4 entries" in run("audit", "verify", "--org", "acme-labs")

    c = Container(Settings(data_dir=tmp_path / "data", catalog_file=tiny_catalog))
    try:
        p = authenticate(c.db, made["api_key"])
        assert p.is_admin and p.role == "owner" and p.org_id == made["id"]
        with pytest.raises(AuthenticationFailed):
            authenticate(c.db, reader["api_key"])
    finally:
        c.close()

    missing = CliRunner().invoke(app, ["admin", "keys", "revoke", "key_nope", "--org", "acme-labs"], env=env)
    assert missing.exit_code == 1 and "not_found" in missing.output.replace("\n", "")

"""The CLI in-process, with the environment a user would set (see tests/cli/conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from tests.support.server import API_KEY, Server

# Steps slow enough to pause a job and to see the bar move; short enough to keep the suite quick.
STEP_DELAY = {"AFINAR_TRAIN_STEP_DELAY_SECONDS": "0.15"}


@dataclass
class Cli:
    env: dict[str, str | None] = field(default_factory=dict)

    def __call__(
        self, *args: str, input: str | None = None, env: Mapping[str, str | None] | None = None
    ) -> Result:
        from afinar.cli.main import app

        return CliRunner().invoke(app, list(args), input=input, env={**self.env, **(env or {})})

    def json(self, *args: str) -> Any:
        """Run with ``--json``; the command must succeed and print one JSON document on stdout."""
        result = self(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


def cli_env(tiny_catalog: Path, data_dir: Path, server: Server | None = None) -> dict[str, str | None]:
    env: dict[str, str | None] = {
        "AFINAR_CATALOG_FILE": str(tiny_catalog),
        "AFINAR_DATA_DIR": str(data_dir),
        # None: unset, so the developer's own environment cannot leak into the tests.
        "AFINAR_BASE_URL": None,
        "AFINAR_API_KEY": None,
        "AFINAR_BOOTSTRAP_API_KEY": None,
        "OPENAI_BASE_URL": None,
        "OPENAI_API_KEY": None,
        "COLUMNS": "200",  # rich tables: no wrapped ids
    }
    if server is not None:
        env.update(AFINAR_BASE_URL=server.base_url, AFINAR_API_KEY=API_KEY)
    return env


def embedded_env(data_dir: Path, catalog: Path) -> dict[str, str | None]:
    """The environment of an operator's `afinar admin …` on an embedded data directory (SQLite)."""
    return {
        "AFINAR_DATA_DIR": str(data_dir),
        "AFINAR_CATALOG_FILE": str(catalog),
        "AFINAR_DATABASE_URL": None,
        "COLUMNS": "200",
    }


def admin(env: Mapping[str, str | None], *args: str) -> str:
    """Run `afinar admin ARGS` in-process; a non-zero exit fails the test with the output."""
    from afinar.cli.main import app

    result = CliRunner().invoke(app, ["admin", *args], env=dict(env))
    assert result.exit_code == 0, result.output
    return result.stdout

"""One ``afinar serve`` for all CLI tests, and a runner that calls the CLI against it.

The CLI runs in-process through ``typer.testing.CliRunner`` with the environment a user would
set (``AFINAR_BASE_URL``, ``AFINAR_API_KEY``); the server is a real process on a free port with
the tiny model, so every command goes through the official SDK and a socket.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import STEP_DELAY, Cli, cli_env
from tests.support.server import Server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_catalog: Path) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("cli-server") / "data", tiny_catalog, **STEP_DELAY).start()
    yield srv
    srv.stop()


@pytest.fixture
def offline(tiny_catalog: Path, tmp_path: Path) -> Cli:
    """The CLI with no server at all (``files check``)."""
    return Cli(cli_env(tiny_catalog, tmp_path / "cli-data"))


@pytest.fixture
def cli(server: Server, tiny_catalog: Path, tmp_path: Path) -> Cli:
    return Cli(cli_env(tiny_catalog, tmp_path / "cli-data", server))

"""Shared fixtures: a tiny base model, a migrated container, the official SDK in-process, the
databases (tests/support/db.py), and the guard that keeps every test off the network.

Fixtures that several test folders use live in tests/support/ and are imported here: the admin
SDK, a project and its service account (sdk.py), the fixed clock (clock.py), the bootstrap
principal and containers on both databases (billing.py), the moderation engine (moderation.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.support import socket_guard
from tests.support.billing import any_db, principal  # noqa: F401  (fixtures)
from tests.support.clock import clock  # noqa: F401  (fixture)
from tests.support.db import db, db_url  # noqa: F401  (fixtures: SQLite, then PostgreSQL)
from tests.support.moderation import builtin_engine  # noqa: F401  (fixture)
from tests.support.sdk import admin, bot, project  # noqa: F401  (fixtures)
from tests.support.tiny_model import TINY, build_tiny_model, write_catalog

# Never the Hugging Face hub: set before anything imports huggingface_hub; servers and training
# children inherit it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Every Settings (and every server child) serves with the built-in engine unless a test names
# another backend explicitly (tests/inference/test_llamacpp.py): `auto` would pick llama.cpp here.
os.environ["AFINAR_INFERENCE_BACKEND"] = "builtin"


@pytest.fixture(autouse=True)
def _no_outbound_network() -> Iterator[None]:
    """Fail a test that tried a non-loopback connection, even if its code swallowed the error."""
    yield
    socket_guard.fail_if_blocked()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_catalog(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return write_catalog(tmp_path_factory.mktemp("catalog") / "catalog.toml", tiny_model_dir, TINY)


@pytest.fixture(scope="session")
def bundled_models_dir(request: pytest.FixtureRequest) -> Path:
    """Where the bundled smollm2 model is converted once; kept in pytest's cache between runs."""
    return Path(request.config.cache.mkdir("afinar-models"))


@pytest.fixture
def settings(tmp_path: Path, tiny_catalog: Path):  # type: ignore[no-untyped-def]
    from afinar.config import Settings

    return Settings(
        data_dir=tmp_path / "data",
        catalog_file=tiny_catalog,
        embedded_worker=False,
        bootstrap_api_key="sk-test-key",
        heartbeat_seconds=0.5,
        lease_seconds=5,
        poll_seconds=0.2,
        safety_eval_max_new_tokens=8,
    )


@pytest.fixture
def container(settings):  # type: ignore[no-untyped-def]
    from afinar.services.container import Container
    from afinar.services.orgs import bootstrap

    c = Container(settings)
    c.migrate()
    bootstrap(c.db, settings.default_org_name, settings.bootstrap_api_key)
    yield c
    c.close()


@pytest.fixture
def app(container):  # type: ignore[no-untyped-def]
    from afinar.server import create_app

    return create_app(container)


@pytest.fixture
def http(app) -> Iterator[object]:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        yield client


@pytest.fixture
def client(http, settings):  # type: ignore[no-untyped-def]
    """The official ``openai`` SDK talking to the app in-process."""
    import openai

    return openai.OpenAI(
        base_url="http://testserver/v1", api_key=settings.bootstrap_api_key, http_client=http, max_retries=0
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--wall-clock",
        metavar="ISO-8601",
        default=None,
        help="Run with the process's wall clock set to this instant, ticking on from there "
        "(e.g. 2026-12-31T23:59:50Z): proves the tests hold whatever the calendar says.",
    )


def pytest_configure(config: pytest.Config) -> None:
    socket_guard.install()
    config.add_cleanup(socket_guard.uninstall)
    when = config.getoption("--wall-clock")
    if when:
        import time_machine

        start = datetime.fromisoformat(when.replace("Z", "+00:00"))
        if start.tzinfo is None:
            raise pytest.UsageError("--wall-clock needs a time zone, e.g. 2026-12-31T23:59:50Z")
        traveller = time_machine.travel(start, tick=True)
        traveller.start()
        config.add_cleanup(traveller.stop)


def pytest_report_header(config: pytest.Config) -> str | None:
    when = config.getoption("--wall-clock")
    return f"wall clock moved to {when} (ticking)" if when else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

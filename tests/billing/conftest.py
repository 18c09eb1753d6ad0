"""Billing fixtures: an injectable clock, the SDK's admin client, and containers on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from afinar.clock import FixedClock

# 2026-11-25 10:00:00 UTC (the month ends six days later).
DAY0 = 1_795_600_800 - 1_795_600_800 % 86_400
T0 = DAY0 + 10 * 3_600
DAY = 86_400


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    """The shared settings, with room for 100 queued chat requests."""
    return settings.model_copy(update={"max_queued_requests": 256})


@pytest.fixture
def clock(container) -> FixedClock:  # type: ignore[no-untyped-def]
    clk = FixedClock(T0)
    container.clock = clk
    return clk


@pytest.fixture
def principal(container):  # type: ignore[no-untyped-def]
    from afinar.services.orgs import authenticate

    return authenticate(container.db, container.settings.bootstrap_api_key)


@pytest.fixture
def admin(http, settings) -> openai.OpenAI:  # type: ignore[no-untyped-def]
    """The official SDK with an admin key: until admin keys exist, any key of the organisation works."""
    key = settings.bootstrap_api_key
    return openai.OpenAI(
        base_url="http://testserver/v1", api_key=key, admin_api_key=key, http_client=http, max_retries=0
    )


@pytest.fixture
def any_db(db_url: str, tmp_path: Path, tiny_catalog: Path) -> Iterator[object]:
    """A migrated container on SQLite, then on PostgreSQL, with a fixed clock."""
    from afinar.config import Settings
    from afinar.services.container import Container
    from afinar.services.orgs import bootstrap

    settings = Settings(
        data_dir=tmp_path / "pgdata",
        database_url=db_url,
        catalog_file=tiny_catalog,
        embedded_worker=False,
        bootstrap_api_key="sk-test-key",
        free_training_tokens_per_day=1_000,
    )
    c = Container(settings)
    c.migrate()
    bootstrap(c.db, settings.default_org_name, settings.bootstrap_api_key)
    c.clock = FixedClock(T0)
    yield c
    c.close()

"""Billing fixtures and helpers: roomy settings, the bootstrap principal, containers on both databases,
and a training job on the tiny model.

``principal`` and ``any_db`` are imported by the root conftest. ``roomy_settings`` overrides
``settings`` only where a test module imports it (``from tests.support.billing import roomy_settings``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from afinar.clock import FixedClock
from tests.support.clock import T0
from tests.support.tiny_model import TINY


@pytest.fixture(name="settings")
def roomy_settings(settings):  # type: ignore[no-untyped-def]
    """The shared settings, with room for 100 queued chat requests."""
    return settings.model_copy(update={"max_queued_requests": 256})


@pytest.fixture
def principal(container):  # type: ignore[no-untyped-def]
    from afinar.services.orgs import authenticate

    return authenticate(container.db, container.settings.bootstrap_api_key)


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


def create(client: openai.OpenAI, fid: str, epochs: int = 2) -> Any:
    """A fine-tuning job on the tiny model (seed 5, batches of 4)."""
    return client.fine_tuning.jobs.create(
        model=TINY, training_file=fid, seed=5, hyperparameters={"n_epochs": epochs, "batch_size": 4}
    )

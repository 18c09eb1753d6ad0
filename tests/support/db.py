"""The one choice of database for tests: SQLite, then PostgreSQL at 127.0.0.1:5432 (database ``test``).

``db_url`` is a fixture with two parameters; the PostgreSQL one carries the ``postgres`` mark and
gets a fresh schema per test. Without a reachable server it skips loudly, unless
``AFINAR_REQUIRE_POSTGRES=1`` (CI), which turns the skip into a failure. ``AFINAR_TEST_POSTGRES_URL``
points it at another server. tests/conftest.py makes ``db_url`` and ``db`` available everywhere.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PG_URL = os.environ.get("AFINAR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def postgres_schema_url() -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped afterwards; skips (or fails) without a server."""
    import sqlalchemy as sa

    try:
        admin = sa.create_engine(PG_URL)
        with admin.connect():
            pass
    except Exception as exc:
        if os.environ.get("AFINAR_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required (AFINAR_REQUIRE_POSTGRES=1) but unreachable: {exc}")
        pytest.skip(f"PostgreSQL NOT TESTED: no server at {PG_URL} ({exc.__class__.__name__})")
    schema = "t_" + uuid.uuid4().hex[:12]
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        yield from postgres_schema_url()


@pytest.fixture
def db(db_url: str) -> Iterator[Any]:
    """A ``Database`` migrated to head on ``db_url``."""
    from afinar.store.db import Database

    database = Database(db_url)
    database.migrate()
    yield database
    database.dispose()

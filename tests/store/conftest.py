"""Store tests run on SQLite and on PostgreSQL (a fresh schema per test)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_URL = os.environ.get("AFINAR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _postgres_schema() -> Iterator[str]:
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


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        yield from _postgres_schema()


@pytest.fixture
def db(db_url: str):  # type: ignore[no-untyped-def]
    from afinar.store.db import Database

    database = Database(db_url)
    database.migrate()
    yield database
    database.dispose()

"""Two API nodes (two containers, each with its own data directory) on one database: the rate limit
counts a key's requests across both, a dashboard session made on one is valid on the other, and a
restarted node keeps both; once with the database as the shared state, once with Redis."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from afinar.clock import FixedClock
from tests.support.clock import T0
from tests.support.dashboard import KEY, sign_in
from tests.support.redis import REDIS_URL, redis_prefix

MASTER_KEY = base64.b64encode(b"k" * 32).decode()  # nodes share the master key (docs/admin.md)


@pytest.fixture(params=["database", "redis"])
def node(request: pytest.FixtureRequest, tmp_path: Path, tiny_catalog: Path) -> Iterator[Callable[[], Any]]:
    """Starts a node (an app behind a TestClient) on the shared database; every node stops at the end."""
    from fastapi.testclient import TestClient

    from afinar.config import Settings
    from afinar.server import create_app
    from afinar.services.container import Container
    from afinar.services.orgs import bootstrap

    redis: dict[str, Any] = {}
    prefixes = redis_prefix() if request.param == "redis" else None
    if prefixes is not None:
        redis = {"redis_url": REDIS_URL, "redis_prefix": next(prefixes)}
    clock = FixedClock(T0)
    stack = ExitStack()
    started: list[Any] = []

    def start() -> Any:
        settings = Settings(
            data_dir=tmp_path / f"node{len(started)}",
            database_url=f"sqlite:///{tmp_path / 'shared.db'}",
            master_key=MASTER_KEY,
            catalog_file=tiny_catalog,
            embedded_worker=False,
            bootstrap_api_key=KEY,
            rate_limit_per_minute=3,
            **redis,
        )
        c = Container(settings, clock=clock)
        c.migrate()
        if not started:
            bootstrap(c.db, settings.default_org_name, KEY)
        stack.callback(c.close)
        client = stack.enter_context(TestClient(create_app(c)))
        client.clock = clock
        started.append(client)
        return client

    with stack:
        yield start
    if prefixes is not None:
        for _ in prefixes:  # deletes the test's keys
            pass


def _list_files(client: Any) -> int:
    return int(client.get("/v1/files", headers={"authorization": f"Bearer {KEY}"}).status_code)


def test_the_rate_limit_counts_across_nodes_and_restarts(node: Callable[[], Any]) -> None:
    a, b = node(), node()
    assert [_list_files(a), _list_files(a), _list_files(b)] == [200, 200, 200]
    refused = b.get("/v1/files", headers={"authorization": f"Bearer {KEY}"})
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.headers["retry-after"] == "60"
    assert _list_files(a) == 429  # refused on either node
    a.clock.advance(30)
    assert _list_files(node()) == 429  # a restarted node remembers
    a.clock.advance(31)  # the first three left the window
    assert [_list_files(b), _list_files(a), _list_files(b), _list_files(a)] == [200, 200, 200, 429]


def _csrf(client: Any) -> str:
    import re

    found = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text)
    assert found is not None
    return found.group(1)


def test_a_dashboard_session_holds_on_every_node_and_across_restarts(node: Callable[[], Any]) -> None:
    from afinar.dashboard.session import COOKIE

    a, b = node(), node()
    assert b.get("/", follow_redirects=False).status_code == 303  # not signed in there yet
    assert sign_in(a).status_code == 303
    b.cookies.set(COOKIE, a.cookies.get(COOKIE))
    assert b.get("/", follow_redirects=False).status_code == 200
    token = _csrf(a)
    assert _csrf(b) == token  # the same session, the same CSRF token
    restarted = node()
    restarted.cookies.set(COOKIE, a.cookies.get(COOKIE))
    assert restarted.get("/", follow_redirects=False).status_code == 200
    assert b.post("/signout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    assert a.get("/", follow_redirects=False).status_code == 303  # signed out everywhere
    assert restarted.get("/", follow_redirects=False).status_code == 303


def test_a_session_ends_when_it_expires(node: Callable[[], Any]) -> None:
    from afinar.dashboard.session import COOKIE, SESSION_SECONDS

    a, b = node(), node()
    assert sign_in(a).status_code == 303
    b.cookies.set(COOKIE, a.cookies.get(COOKIE))
    a.clock.advance(SESSION_SECONDS - 1)
    assert b.get("/", follow_redirects=False).status_code == 200
    a.clock.advance(1)
    assert b.get("/", follow_redirects=False).status_code == 303
    assert a.get("/", follow_redirects=False).status_code == 303

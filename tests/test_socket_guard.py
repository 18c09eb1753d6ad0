"""The socket guard of tests/conftest.py: loopback passes, anything else fails before a packet leaves."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.support import socket_guard
from tests.support.socket_guard import OutboundConnectionBlocked

OUTSIDE = ("203.0.113.1", 9)  # TEST-NET-3 (RFC 5737), the discard port


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server


def test_a_connection_outside_loopback_raises_and_names_the_address() -> None:
    with socket.socket() as s, pytest.raises(OutboundConnectionBlocked, match=r"203\.0\.113\.1:9"):
        s.connect(OUTSIDE)
    with socket.socket() as s, pytest.raises(OutboundConnectionBlocked):
        s.connect_ex(OUTSIDE)
    with pytest.raises(OutboundConnectionBlocked, match=r"example\.com:443"):
        socket.create_connection(("example.com", 443), timeout=0.01)  # refused before any lookup
    with socket.socket(socket.AF_INET6) as s, pytest.raises(OutboundConnectionBlocked, match="2001:db8::1"):
        s.connect(("2001:db8::1", 9, 0, 0))
    assert socket_guard.take() == ["203.0.113.1:9", "203.0.113.1:9", "example.com:443", "2001:db8::1:9"]


def test_clients_see_the_error_itself() -> None:
    with pytest.raises(OutboundConnectionBlocked):  # not an httpx.ConnectError that a retry could eat
        httpx.get("http://203.0.113.1:9/", timeout=0.01)
    socket_guard.take()


def test_a_swallowed_attempt_still_fails_the_test() -> None:
    with contextlib.suppress(Exception):  # code under test that eats every error
        socket.create_connection(OUTSIDE, timeout=0.01)
    with pytest.raises(pytest.fail.Exception, match=r"network connection attempted to 203\.0\.113\.1:9"):
        socket_guard.fail_if_blocked()  # what the autouse fixture runs after each test
    assert socket_guard.take() == []


def test_loopback_is_allowed(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    with socket.socket() as s:
        s.connect(("127.0.0.1", port))
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) == 0
    socket.create_connection(("localhost", port), timeout=5).close()
    assert socket_guard.take() == []


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1", "localhost", "LOCALHOST.", "0.0.0.0", ""]
)
def test_local_addresses(host: str) -> None:
    assert socket_guard.is_local(host)


@pytest.mark.parametrize(
    "host", ["203.0.113.1", "10.0.0.1", "2001:db8::1", "example.com", "localhost.example"]
)
def test_other_addresses(host: str) -> None:
    assert not socket_guard.is_local(host)


def test_unix_sockets_pass() -> None:
    socket_guard.check(socket.AF_UNIX, "/tmp/anything.sock")

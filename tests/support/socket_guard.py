"""No test talks to the outside world: a connection to anything but loopback raises and fails the test.

``install()`` (tests/conftest.py, for the whole session) wraps ``socket.socket.connect``,
``connect_ex`` and ``socket.create_connection`` in this process. Loopback (127.0.0.0/8, ::1, the
unspecified address, ``localhost`` names) and non-IP families (AF_UNIX...) pass; any other address
raises ``OutboundConnectionBlocked`` before a packet leaves, and is recorded, so that a test whose
code swallows the error still fails (``fail_if_blocked()``, run by an autouse fixture). Host names other
than localhost are refused without being resolved. Subprocesses (``afinar serve``, training
children, the browser) are not patched; they get ``HF_HUB_OFFLINE=1`` through the environment.
C-level clients (libpq) are not seen either: the database is at 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from typing import Any

LOCAL_NAMES = frozenset({"", "localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


class OutboundConnectionBlocked(RuntimeError):
    """A test tried to connect to a non-loopback address."""


_lock = threading.Lock()
_blocked: list[str] = []
_originals: dict[str, Any] = {}


def is_local(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if not isinstance(host, str):
        return False
    name = host.split("%", 1)[0].strip("[]").lower().rstrip(".")
    if name in LOCAL_NAMES or name.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False  # a host name: never resolved here
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


def check(family: int, address: Any) -> None:
    """Raise ``OutboundConnectionBlocked`` (and record it) unless ``address`` is local."""
    if family not in (socket.AF_INET, socket.AF_INET6):
        return  # AF_UNIX and the like never leave the machine
    host = address[0] if isinstance(address, tuple) and address else address
    if is_local(host):
        return
    where = f"{host}:{address[1]}" if isinstance(address, tuple) and len(address) > 1 else repr(address)
    message = f"test tried to open a network connection to {where}: only loopback is allowed"
    with _lock:
        _blocked.append(where)
    raise OutboundConnectionBlocked(message)


def _connect(self: socket.socket, address: Any) -> None:
    check(self.family, address)
    _originals["connect"](self, address)


def _connect_ex(self: socket.socket, address: Any) -> int:
    check(self.family, address)
    return int(_originals["connect_ex"](self, address))


def _create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
    check(socket.AF_INET, address)  # before any name lookup; the family only selects the check
    sock: socket.socket = _originals["create_connection"](address, *args, **kwargs)
    return sock


def install() -> None:
    if _originals:
        return
    _originals.update(
        connect=socket.socket.connect,
        connect_ex=socket.socket.connect_ex,
        create_connection=socket.create_connection,
    )
    socket.socket.connect = _connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign,assignment]
    socket.create_connection = _create_connection


def uninstall() -> None:
    if not _originals:
        return
    socket.socket.connect = _originals.pop("connect")  # type: ignore[method-assign]
    socket.socket.connect_ex = _originals.pop("connect_ex")  # type: ignore[method-assign]
    socket.create_connection = _originals.pop("create_connection")


def fail_if_blocked() -> None:
    """Fail the current test if it tried a blocked connection since the last check."""
    import pytest

    blocked = take()
    if blocked:
        pytest.fail(f"network connection attempted to {', '.join(blocked)}: tests stay on loopback")


def take() -> list[str]:
    """The addresses blocked since the last call (and forget them)."""
    with _lock:
        found = list(_blocked)
        _blocked.clear()
    return found

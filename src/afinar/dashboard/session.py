"""Dashboard sign-in sessions: server-side, behind a signed HttpOnly SameSite=Strict cookie.

The API key a person signs in with stays on the server: the cookie carries only a random session
id, signed with an HMAC key kept in the data directory (``dashboard.secret``, mode 0600). Every
request re-authenticates the stored key, so revoking the key ends its dashboard sessions too.
Sessions live in this process's memory; a restart signs everyone out (``afinar serve`` runs one
process). Each session has a CSRF token that every POST must echo (form field or header).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from afinar.clock import Clock, system_clock

COOKIE = "afinar_session"
SIGNIN_COOKIE = "afinar_signin"  # a nonce binding the sign-in form to this browser (login CSRF)
SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 10_000


@dataclass(frozen=True)
class DashboardSession:
    id: str
    api_key: str
    csrf: str
    expires_at: float


def load_secret(data_dir: Path) -> bytes:
    """The HMAC key for cookies, created once (0600) in the data directory."""
    path = data_dir / "dashboard.secret"
    try:
        return bytes.fromhex(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret.hex())
    os.replace(tmp, path)
    return secret


class SessionStore:
    def __init__(self, secret: bytes, clock: Clock = system_clock) -> None:
        self._secret = secret
        self._clock = clock
        self._sessions: dict[str, DashboardSession] = {}
        self._lock = threading.Lock()

    # --- signing -----------------------------------------------------------------------------

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self._secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def sign(self, value: str) -> str:
        return f"{value}.{self._mac('cookie', value)}"

    def unsign(self, token: str | None) -> str | None:
        value, _, mac = (token or "").rpartition(".")
        if value and hmac.compare_digest(mac, self._mac("cookie", value)):
            return value
        return None

    def signin_token(self, nonce: str) -> str:
        return self._mac("signin", nonce)

    def check_signin_token(self, nonce: str | None, token: str | None) -> bool:
        return bool(nonce and token) and hmac.compare_digest(self.signin_token(nonce or ""), token or "")

    # --- sessions ----------------------------------------------------------------------------

    def create(self, api_key: str) -> DashboardSession:
        now = self._clock()
        session = DashboardSession(
            id=secrets.token_urlsafe(32),
            api_key=api_key,
            csrf=secrets.token_urlsafe(32),
            expires_at=now + SESSION_SECONDS,
        )
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                self._prune(now)
            self._sessions[session.id] = session
        return session

    def get(self, cookie: str | None) -> DashboardSession | None:
        sid = self.unsign(cookie)
        if sid is None:
            return None
        with self._lock:
            session = self._sessions.get(sid)
            if session is not None and session.expires_at <= self._clock():
                del self._sessions[sid]
                session = None
        return session

    def drop(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def _prune(self, now: float) -> None:
        for sid in [s for s, v in self._sessions.items() if v.expires_at <= now]:
            del self._sessions[sid]
        while len(self._sessions) >= MAX_SESSIONS:  # still full: forget the oldest
            del self._sessions[min(self._sessions, key=lambda s: self._sessions[s].expires_at)]


def check_csrf(session: DashboardSession, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(session.csrf, token or "")

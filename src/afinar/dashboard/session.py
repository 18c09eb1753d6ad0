"""Dashboard sign-in sessions: server-side, behind a signed HttpOnly SameSite=Strict cookie.

The API key a person signs in with stays on the server: the cookie carries only a random session
id, signed with an HMAC key derived from the master key (``AFINAR_MASTER_KEY``), which every API
node shares. Every request re-authenticates the stored key, so revoking the key ends its dashboard
sessions too. Sessions live in the shared state (store/shared_state.py: the database, or Redis
when ``AFINAR_REDIS_URL`` is set), so a session made on one node is valid on every node and
survives restarts. What is stored names the session by a hash of its id and holds the API key
sealed (AES-GCM) under a key derived from the id and the cookie key: the stored rows alone neither
sign anyone in nor reveal a key. Each session has a CSRF token, derived from its id, that every
POST must echo (form field or header).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from afinar.clock import Clock, system_clock
from afinar.store.shared_state import SessionRow, SessionRows

COOKIE = "afinar_session"
SIGNIN_COOKIE = "afinar_signin"  # a nonce binding the sign-in form to this browser (login CSRF)
SESSION_SECONDS = 12 * 3600
NONCE = 12


@dataclass(frozen=True)
class DashboardSession:
    id: str
    api_key: str
    csrf: str
    expires_at: float


def cookie_secret(master_key: bytes) -> bytes:
    """The HMAC key for cookies: derived from the master key, so every node signs alike."""
    return hmac.new(master_key, b"afinar dashboard cookies v1", hashlib.sha256).digest()


class SessionStore:
    def __init__(self, secret: bytes, rows: SessionRows, clock: Clock = system_clock) -> None:
        self._secret = secret
        self._rows = rows
        self._clock = clock

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

    # --- what is stored ----------------------------------------------------------------------

    @staticmethod
    def row_id(session_id: str) -> str:
        return hashlib.sha256(f"afinar-session:{session_id}".encode()).hexdigest()

    def _seal_key(self, session_id: str) -> bytes:
        return bytes.fromhex(self._mac("seal", session_id))

    def _seal(self, session_id: str, api_key: str) -> str:
        nonce = os.urandom(NONCE)
        sealed = AESGCM(self._seal_key(session_id)).encrypt(
            nonce, api_key.encode(), self.row_id(session_id).encode()
        )
        return base64.b64encode(nonce + sealed).decode()

    def _open(self, session_id: str, sealed: str) -> str | None:
        raw = base64.b64decode(sealed)
        try:
            plain = AESGCM(self._seal_key(session_id)).decrypt(
                raw[:NONCE], raw[NONCE:], self.row_id(session_id).encode()
            )
        except InvalidTag:
            return None  # sealed under another cookie key (the master key changed)
        return plain.decode()

    # --- sessions ----------------------------------------------------------------------------

    def create(self, api_key: str, *, org_id: str, key_id: str) -> DashboardSession:
        now = self._clock()
        sid = secrets.token_urlsafe(32)
        expires_at = now + SESSION_SECONDS
        self._rows.put(
            SessionRow(
                id=self.row_id(sid),
                org_id=org_id,
                key_id=key_id,
                sealed_key=self._seal(sid, api_key),
                created_at=now,
                expires_at=expires_at,
            )
        )
        return DashboardSession(id=sid, api_key=api_key, csrf=self._mac("csrf", sid), expires_at=expires_at)

    def get(self, cookie: str | None) -> DashboardSession | None:
        sid = self.unsign(cookie)
        if sid is None:
            return None
        row = self._rows.get(self.row_id(sid), self._clock())
        if row is None:
            return None
        api_key = self._open(sid, row.sealed_key)
        if api_key is None:
            self._rows.delete(row.id)
            return None
        return DashboardSession(
            id=sid, api_key=api_key, csrf=self._mac("csrf", sid), expires_at=row.expires_at
        )

    def drop(self, session_id: str) -> None:
        self._rows.delete(self.row_id(session_id))


def check_csrf(session: DashboardSession, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(session.csrf, token or "")

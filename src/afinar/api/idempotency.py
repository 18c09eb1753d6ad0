"""``Idempotency-Key`` on the routes that create something (docs/api.md, "Idempotent retries").

Stripe's semantics, so a client retrying through a load balancer never creates two objects:

* the key belongs to the caller's organisation and project; the first request with it takes it
  (an INSERT the unique constraint lets one request win, on any node: store/idempotency.py), runs,
  and its answer — status and body, a 4xx included — is stored;
* the same key again, on the same route with the same request (SHA-256 ``fingerprint``), gets
  that answer again, with ``Idempotent-Replayed: true``, and nothing is created;
* the same key on another route or with another request is a 422 ``idempotency_key_reused``;
  while the first request is still running it is a 409 ``idempotency_key_in_use``;
* a request that fails with a server error (5xx, or a crash) gives its key back: a retry runs.

A create route takes ``idem: Idempotency = Depends(idempotency)`` and wraps its work in
``idem.run(fingerprint(body), create)``; the upload route uses the steps (``start``, ``finish``,
``fail``) itself, as its fingerprint is known only once the file has streamed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request, Response

from afinar import errors
from afinar.api.deps import get_container, get_principal
from afinar.api.errors import envelope, status_for
from afinar.services.container import Container
from afinar.services.orgs import Principal
from afinar.store import idempotency as repo

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# An in-flight key older than this is taken to be held by a node that died mid-request: a retry
# takes it over (an upload of the largest file finishes well within it).
ABANDONED_SECONDS = 15 * 60
# Answers never stored: a retry of the request may succeed (a conflict, a rate or quota limit).
RETRYABLE = frozenset({409, 429})


def fingerprint(request: Any) -> str:
    """SHA-256 of the request, canonical JSON: key order and spacing do not matter."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Idempotency:
    """The request's idempotency key (``key`` None: no header, every step does nothing)."""

    key: str | None
    method: str
    path: str
    response: Response
    principal: Principal
    container: Container
    _seq: int | None = None

    def run(self, fingerprint: str, create: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """``create()``'s answer, or the first answer given under this key (nothing created)."""
        earlier = self.start(fingerprint)
        if earlier is not None:
            return self.replay(earlier, fingerprint)
        try:
            body = create()
        except BaseException as exc:
            self.fail(exc, fingerprint)
            raise
        self.finish(fingerprint, body)
        return body

    def start(self, fingerprint: str | None) -> repo.Held | None:
        """Take the key: None when this request goes on (then ``finish`` or ``fail``), else the
        earlier request's finished row, for ``replay``. A fingerprint of None (an upload, still to
        stream) is checked in ``replay``. Raises 409 in flight, 422 on another route."""
        if self.key is None:
            return None
        c, p = self.container, self.principal
        now = c.db.now()
        held = repo.take(
            c.db,
            org_id=p.org_id,
            project_id=p.project_id,
            key=self.key,
            method=self.method,
            path=self.path,
            fingerprint=fingerprint,
            expired_before=now - c.settings.idempotency_ttl_hours * 3600,
            abandoned_before=now - ABANDONED_SECONDS,
        )
        if held.taken:
            self._seq = held.seq
            return None
        if (held.method, held.path) != (self.method, self.path):
            raise self._reused(f"it was first used with {held.method} {held.path}")
        if held.status_code is None:
            raise errors.Conflict(
                f"A request with the Idempotency-Key '{self.key}' is still in progress; "
                "retry once it has finished.",
                code="idempotency_key_in_use",
            )
        return held

    def replay(self, earlier: repo.Held, fingerprint: str) -> dict[str, Any]:
        """The earlier answer, status included, marked ``Idempotent-Replayed: true``."""
        if earlier.fingerprint != fingerprint:
            raise self._reused("it was first used with different request parameters")
        assert earlier.status_code is not None and earlier.response is not None
        self.response.status_code = earlier.status_code
        self.response.headers[REPLAYED_HEADER] = "true"
        if earlier.status_code in (400, 401, 403, 404):
            self.response.headers["x-should-retry"] = "false"
        return earlier.response

    def finish(self, fingerprint: str, body: dict[str, Any], status_code: int = 200) -> None:
        if self._seq is not None:
            repo.finish(
                self.container.db, self._seq, fingerprint=fingerprint, status_code=status_code, response=body
            )
            self._seq = None

    def fail(self, exc: BaseException, fingerprint: str | None) -> None:
        """Store a client error as the key's answer (Stripe replays those); give the key back on
        anything else — a server error, or a 409 or 429 that a later retry may pass — so a retry
        runs again."""
        if self._seq is None:
            return
        status = status_for(exc) if isinstance(exc, errors.AfinarError) else 500
        if isinstance(exc, errors.AfinarError) and status < 500 and status not in RETRYABLE and fingerprint:
            body = envelope(exc.message, exc.type, exc.param, exc.code)
            self.finish(fingerprint, body, status)
        else:
            repo.release(self.container.db, self._seq)
            self._seq = None

    def _reused(self, why: str) -> errors.Unprocessable:
        return errors.Unprocessable(
            f"Keys for idempotent requests can only be used with the same method, path and parameters "
            f"they were first used with: the Idempotency-Key '{self.key}' is reused, and {why}. "
            "Use a new key for a new request.",
            code="idempotency_key_reused",
        )


def idempotency(
    request: Request,
    response: Response,
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
) -> Idempotency:
    """The route's ``Idempotency`` (a header of 1 to 255 characters, else a 400)."""
    key = request.headers.get(HEADER)
    if key is not None and not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise errors.InvalidRequest(
            f"The Idempotency-Key header must be 1 to {MAX_KEY_LENGTH} characters long; "
            f"this one has {len(key)}.",
            param=HEADER,
            code="invalid_idempotency_key",
        )
    return Idempotency(key, request.method, request.url.path, response, p, c)

"""Readiness (``GET /ready``): can this node serve traffic now?

It checks the database (one trivial read, ``store/probe.ping``) and the blob store (a small probe
object written, read back and deleted under a reserved prefix, ``BlobStore.probe``), each
on its own thread with a short timeout, so a hung database or disk answers "not ready" instead
of hanging the probe. It also says whether the ML stack is imported (``afinar serve`` holds every
request but ``/health`` and ``/ready`` until it is). Reasons are short and carry no secret: an
exception's class and first line, any URL credentials masked, no file paths.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from afinar.store.probe import ping

if TYPE_CHECKING:
    from afinar.store.db import Database

DATABASE = "database"
BLOB_STORE = "blob_store"
ML_STACK = "ml_stack"
REASON_CHARS = 200


class ProbedStore(Protocol):
    def probe(self) -> None: ...


@dataclass(frozen=True)
class Check:
    status: str  # "ok", "error" or (ML stack only) "loading"
    reason: str | None = None

    def to_json(self) -> dict[str, str]:
        return {"status": self.status} | ({"reason": self.reason} if self.reason else {})


@dataclass(frozen=True)
class Readiness:
    checks: dict[str, Check] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return all(c.status == "ok" for c in self.checks.values())

    @property
    def failing(self) -> dict[str, Check]:
        return {name: c for name, c in self.checks.items() if c.status != "ok"}

    def message(self) -> str:
        parts = [f"{name}: {c.reason or c.status}" for name, c in self.failing.items()]
        return "Not ready: " + "; ".join(parts) + "."


def reason(exc: BaseException) -> str:
    """A short, path- and secret-free account of ``exc``."""
    inner = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
    if isinstance(inner, OSError) and inner.strerror:
        text = inner.strerror  # not str(): that names the file
    else:
        lines = str(inner).strip().splitlines()
        text = lines[0] if lines else ""
    text = re.sub(r"://[^/\s@]*@", "://***@", text)  # user:password in a URL
    text = re.sub(r"(?i)(password|secret|token|key)=\S+", r"\1=***", text)
    out = type(inner).__name__ + (f": {text}" if text else "")
    return out[:REASON_CHARS]


class ReadinessService:
    def __init__(self, *, db: Database, blobs: ProbedStore, timeout_seconds: float = 2.0) -> None:
        self.db = db
        self.blobs = blobs
        self.timeout_seconds = timeout_seconds

    def check(self, *, ml_stack_ready: bool) -> Readiness:
        probes: dict[str, Callable[[], None]] = {
            DATABASE: lambda: ping(self.db),
            BLOB_STORE: self.blobs.probe,
        }
        pool = ThreadPoolExecutor(len(probes), thread_name_prefix="afinar-ready")
        try:
            futures = {name: pool.submit(fn) for name, fn in probes.items()}
            checks = {name: self._outcome(future) for name, future in futures.items()}
        finally:
            pool.shutdown(wait=False)  # a hung probe keeps its thread, not the request
        checks[ML_STACK] = Check("ok") if ml_stack_ready else Check("loading", "importing the ML stack")
        return Readiness(checks)

    def _outcome(self, future: Future[None]) -> Check:
        try:
            future.result(timeout=self.timeout_seconds)
        except FutureTimeout:
            return Check("error", f"no answer within {self.timeout_seconds:g} s")
        except Exception as exc:
            return Check("error", reason(exc))
        return Check("ok")

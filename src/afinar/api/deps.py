"""Request dependencies: the container and the authenticated principal."""

from __future__ import annotations

import json
import logging
import re
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from afinar.api import ratelimit
from afinar.errors import InvalidRequest
from afinar.services import access, audit
from afinar.services.container import Container
from afinar.services.orgs import ORGANIZATION_HEADER, Principal, authenticate

log = logging.getLogger("afinar.api")

# A response header (one value per warning) for what the server did differently from what the
# request asked, without failing it: e.g. an OpenAI-Organization header it ignored (docs/api.md).
WARNING_HEADER = "Afinar-Warning"
_PRINTABLE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_LOGGED_MAX = 4096  # distinct (key, header, value) warnings logged per process before starting over


M = TypeVar("M", bound=BaseModel)


async def json_body(request: Request) -> dict[str, Any]:
    """The request body as a JSON object (an empty body is ``{}``); anything else is a clear 400.

    Routes take the raw object through this and validate it with ``parse_body`` so that FastAPI's
    own 422 never reaches a client and every error uses OpenAI's envelope.
    """
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise InvalidRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def parse_body(model: type[M], body: dict[str, Any]) -> M:
    """Validate ``body`` with a request model of ``api/schemas/``; the first problem becomes a 400
    ``invalid_request_error`` naming the parameter (``param``), as OpenAI reports it."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(part) for part in first.get("loc", ())) or None
        reason = str(first.get("msg", "invalid value"))
        if isinstance(first.get("ctx", {}).get("error"), InvalidRequest):
            raise first["ctx"]["error"] from None  # a validator's own error, message and param as raised
        message = f"Invalid value for '{param}': {reason}" if param else f"Invalid request: {reason}"
        raise InvalidRequest(message, param=param) from None


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


async def get_principal(request: Request) -> Principal:
    """Authenticate the bearer key (headers honoured), rate-limit it, check its role for this route,
    and bind it to the request: the audit log's actor and, off the admin routes, the project scope.

    Async on purpose: what it binds (context variables) must reach the endpoint, which runs in a
    copy of this context; a sync dependency would bind inside a worker thread's throwaway copy.
    """
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    token = secret.strip() if scheme.lower() == "bearer" else ""
    c = get_container(request)
    p = await run_in_threadpool(
        authenticate,
        c.db,
        token,
        organization=request.headers.get("openai-organization") or None,
        project=request.headers.get("openai-project") or None,
    )
    for name in p.ignored_headers:
        _ignored_header(request, p, name)
    await ratelimit.check(c, p.key_id, c.settings.rate_limit_per_minute)
    access.authorize(p, request.method, request.url.path)
    audit.bind(p)
    if not access.is_admin_path(request.url.path):
        access.bind_scope(p)
    return p


def warn(request: Request, message: str) -> None:
    """Send ``message`` back in an ``Afinar-Warning`` response header (see ``api/app.py``)."""
    pending: list[str] | None = getattr(request.state, "warnings", None)
    if pending is None:
        pending = request.state.warnings = []
    pending.append(message)


def _ignored_header(request: Request, p: Principal, name: str) -> None:
    """Tell the caller, and the operator's log (once per key and value), about an ignored header."""
    value = request.headers.get(name, "")
    shown = f" '{value}'" if _PRINTABLE.fullmatch(value) else ""
    if name == ORGANIZATION_HEADER:
        message = (
            f"{name} header{shown} names no organization on this server and was ignored; "
            f"the API key's organization {p.org_id} was used."
        )
    else:
        message = (
            f"{name} header{shown} names no project on this server and was ignored; "
            f"the API key's project {p.project_id} was used."
        )
    warn(request, message)
    logged: set[tuple[str, str, str]] | None = getattr(request.app.state, "ignored_headers_logged", None)
    if logged is None:  # runs on the event loop: no lock needed
        logged = request.app.state.ignored_headers_logged = set()
    if (p.key_id, name, value) not in logged:
        if len(logged) >= _LOGGED_MAX:
            logged.clear()
        logged.add((p.key_id, name, value))
        log.warning(
            "key %s sent an %s header naming nothing on this server (%r); ignored", p.key_id, name, value
        )

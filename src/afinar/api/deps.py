"""Request dependencies: the container and the authenticated principal."""

from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from afinar.api import ratelimit
from afinar.services import admin, audit
from afinar.services.container import Container
from afinar.services.orgs import Principal, authenticate


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
    ratelimit.check(request.app, p.key_id, c.settings.rate_limit_per_minute)
    admin.authorize(p, request.method, request.url.path)
    audit.bind(p)
    if not admin.is_admin_path(request.url.path):
        admin.bind_scope(p)
    return p

"""The app factory, ``create_app(container)``: one FastAPI application composing the API routes, the
dashboard and the error mapping. It sits above ``api/`` and ``dashboard/``; ``cli`` calls it."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from afinar import __version__
from afinar.api import errors
from afinar.api.deps import WARNING_HEADER
from afinar.api.routes import (
    admin,
    chat,
    checkpoint_permissions,
    evals,
    files,
    graders,
    health,
    jobs,
    models,
    moderations,
    org_settings,
    reports,
    responses,
    usage,
    webhooks,
)
from afinar.dashboard.router import router as dashboard
from afinar.services.container import Container

UNGATED = ("/health", "/ready")  # answer while the ML stack is imported


def create_app(container: Container, *, ready: threading.Event | None = None) -> FastAPI:
    """The application. With ``ready``, every request but ``/health`` and ``/ready`` waits until it is
    set: ``afinar serve`` opens the port at once and sets it when the ML stack is imported
    (catalog/ml_stack.py); ``/ready`` says whether it is."""
    app = FastAPI(title="Afinar", version=__version__, docs_url="/docs", redoc_url=None)
    app.state.container = container
    app.state.ml_stack_ready = ready
    errors.install(app)

    @app.middleware("http")
    async def _each_request(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        while ready is not None and not ready.is_set() and request.url.path not in UNGATED:
            await asyncio.sleep(0.05)  # only in the first seconds of a process
        request.state.warnings = []  # api/deps.warn: what the request is told it did not get
        response = await call_next(request)
        response.headers.setdefault("x-request-id", "req_" + uuid.uuid4().hex)
        for message in request.state.warnings:
            response.headers.append(WARNING_HEADER, message)
        return response

    app.include_router(health.router)
    for module in (files, jobs, models, chat, reports, usage):
        app.include_router(module.router, prefix="/v1")
    app.include_router(moderations.router, prefix="/v1")
    app.include_router(admin.router, prefix="/v1")
    app.include_router(checkpoint_permissions.router, prefix="/v1")
    app.include_router(org_settings.router, prefix="/v1")
    app.include_router(evals.router, prefix="/v1")
    app.include_router(graders.router, prefix="/v1")
    app.include_router(responses.router, prefix="/v1")
    app.include_router(webhooks.router, prefix="/v1")
    app.include_router(dashboard)
    return app

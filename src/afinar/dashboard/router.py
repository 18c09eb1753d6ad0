"""The dashboard's routes, for ``create_app`` to include (pages at ``/``, assets at ``/static``)."""

from __future__ import annotations

from fastapi import APIRouter

from afinar.dashboard.pages import (
    auth,
    evals,
    files,
    home,
    jobs,
    models,
    playground,
    static,
    usage,
    webhooks,
    workers,
)

router = APIRouter(include_in_schema=False)
for module in (static, auth, home, files, jobs, models, evals, playground, usage, webhooks, workers):
    router.include_router(module.router)

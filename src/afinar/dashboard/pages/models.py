"""Models: the list, a model card, delete, download the adapter."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from afinar.api.schemas.models import model_card_object
from afinar.dashboard import modelcard
from afinar.dashboard.deps import DashboardRoute, Viewer, checked_viewer, container, page, redirect, viewer

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)


@router.get("/models")
def models_page(request: Request, v: Viewer = Depends(viewer)) -> Response:
    infos = container(request).models.list(v.org_id, v.principal.org_slug)
    return page(request, "models.html", viewer=v, models=modelcard.rows(infos))


@router.get("/models/{name:path}/adapter.zip")
async def download_adapter(request: Request, name: str, v: Viewer = Depends(viewer)) -> Response:
    """The adapter (weights, config, tokenizer) with its model card, as the models service exports it."""
    models = container(request).models
    chunks = await run_in_threadpool(lambda: models.export_archive(v.org_id, name, card=model_card_object))
    disposition = f'attachment; filename="{modelcard.archive_name(name)}"'
    return StreamingResponse(
        chunks, media_type="application/zip", headers={"Content-Disposition": disposition}
    )


@router.post("/models/{name:path}/delete")
def delete_model(request: Request, name: str, v: Viewer = Depends(checked_viewer)) -> Response:
    container(request).models.delete(v.org_id, name)
    return redirect("/models")


@router.get("/models/{name:path}")
def model_page(request: Request, name: str, v: Viewer = Depends(viewer)) -> Response:
    card = modelcard.card(container(request), v.org_id, v.principal.org_slug, name)
    return page(request, "model.html", viewer=v, card=card)

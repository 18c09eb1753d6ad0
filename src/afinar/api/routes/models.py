"""``/v1/models`` (model names contain colons: the path converter takes them whole)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from afinar.api.deps import get_container, get_principal
from afinar.api.schemas.models import model_card_object, model_deleted, model_list, model_object
from afinar.services.container import Container
from afinar.services.orgs import Principal

router = APIRouter(tags=["models"])


@router.get("/models")
def list_models(
    p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> dict[str, Any]:
    return model_list(c.models.list(p.org_id, p.org_slug))


@router.get("/afinar/models/{model:path}/card")
def model_card(
    model: str, p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> dict[str, Any]:
    return model_card_object(model, c.models.card(p.org_id, model))


@router.get("/afinar/models/{model:path}/adapter")
def model_adapter(
    model: str, p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> StreamingResponse:
    chunks = c.models.export_archive(p.org_id, model, card=model_card_object)
    filename = model.replace(":", "_") + ".zip"
    return StreamingResponse(
        chunks,
        media_type="application/zip",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/afinar/models/{model:path}/export")
def model_export(
    model: str,
    format: str | None = Query(None, description="gguf, merged or peft"),
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
) -> StreamingResponse:
    """The tuned model as a zip: a GGUF with an Ollama Modelfile, a merged folder, or its adapter."""
    chunks = c.model_export.export(p.org_id, model, format, card=model_card_object)
    filename = f"{model.replace(':', '_')}-{format}.zip"
    return StreamingResponse(
        chunks,
        media_type="application/zip",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/models/{model:path}")
def retrieve_model(
    model: str, p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> dict[str, Any]:
    return model_object(c.models.get(p.org_id, p.org_slug, model))


@router.delete("/models/{model:path}")
def delete_model(
    model: str, p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> dict[str, Any]:
    return model_deleted(c.models.delete(p.org_id, model))

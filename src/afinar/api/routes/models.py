"""``/v1/models`` (model names contain colons: the path converter takes them whole)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from afinar.api.deps import get_container, get_principal
from afinar.services.container import Container
from afinar.services.models import ModelInfo
from afinar.services.orgs import Principal

router = APIRouter(tags=["models"])


def model_object(m: ModelInfo) -> dict[str, Any]:
    return {"id": m.id, "object": "model", "created": m.created, "owned_by": m.owned_by}


@router.get("/models")
def list_models(p: Principal = Depends(get_principal), c: Container = Depends(get_container)) -> dict[str, Any]:
    return {"object": "list", "data": [model_object(m) for m in c.models.list(p.org_id, p.org_slug)]}


@router.get("/models/{model:path}")
def retrieve_model(
    model: str, p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> dict[str, Any]:
    return model_object(c.models.get(p.org_id, p.org_slug, model))


@router.delete("/models/{model:path}")
def delete_model(
    model: str, p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> dict[str, Any]:
    return {"id": c.models.delete(p.org_id, model), "object": "model", "deleted": True}

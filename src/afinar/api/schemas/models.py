"""Wire shapes for models (``/v1/models``) and the additive model card (``afinar.model_card``)."""

from __future__ import annotations

from typing import Any

from afinar.services.models import ModelInfo


def model_object(m: ModelInfo) -> dict[str, Any]:
    return {"id": m.id, "object": "model", "created": m.created, "owned_by": m.owned_by}


def model_list(models: list[ModelInfo]) -> dict[str, Any]:
    return {"object": "list", "data": [model_object(m) for m in models]}


def model_card_object(name: str, card: dict[str, Any]) -> dict[str, Any]:
    """``afinar.model_card``: the card written when the model was published, under the name asked for."""
    return {"object": "afinar.model_card", "id": name, **card}


def model_deleted(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "deleted": True}

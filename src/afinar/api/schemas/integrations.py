"""A fine-tuning job's ``integrations`` checked as OpenAI checks them: an array of
``{"type": "wandb", "wandb": {"project": …, "name"?, "entity"?, "tags"?}}`` (contract §1.3), each
problem a 400 whose ``param`` names the field. The checked form is what the job stores and echoes."""

from __future__ import annotations

from typing import Any

from afinar.domain.integrations import MAX_TAG_CHARS, MAX_TAGS, WANDB, WandbIntegration
from afinar.errors import InvalidRequest


def check_integrations(value: Any) -> list[dict[str, Any]] | None:
    """The request's ``integrations`` in their stored shape (None when absent)."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidRequest("integrations must be an array", param="integrations")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        where = f"integrations[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"{where} must be an object", param=where)
        if item.get("type") != WANDB:
            raise InvalidRequest(
                f"Invalid integration type: {item.get('type')!r}; the supported type is 'wandb'.",
                param=f"{where}.type",
            )
        if any(o["type"] == WANDB for o in out):
            raise InvalidRequest("Only one 'wandb' integration may be given.", param=where)
        out.append(_wandb(item.get(WANDB), f"{where}.wandb").to_json())
    return out


def _wandb(raw: Any, where: str) -> WandbIntegration:
    if not isinstance(raw, dict):
        raise InvalidRequest(f"Missing required parameter: '{where}'.", param=where)
    project = raw.get("project")
    if not isinstance(project, str) or not project.strip():
        raise InvalidRequest(f"Missing required parameter: '{where}.project'.", param=f"{where}.project")
    for key in ("name", "entity"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise InvalidRequest(f"{where}.{key} must be a string", param=f"{where}.{key}")
    tags = raw.get("tags")
    if tags is None:
        tags = []
    if not isinstance(tags, list) or len(tags) > MAX_TAGS:
        raise InvalidRequest(
            f"{where}.tags must be an array of at most {MAX_TAGS} tags", param=f"{where}.tags"
        )
    for tag in tags:
        if not isinstance(tag, str) or not tag or len(tag) > MAX_TAG_CHARS:
            raise InvalidRequest(
                f"Each of {where}.tags must be a string of 1 to {MAX_TAG_CHARS} characters",
                param=f"{where}.tags",
            )
    return WandbIntegration(project=project, name=raw.get("name"), entity=raw.get("entity"), tags=tuple(tags))

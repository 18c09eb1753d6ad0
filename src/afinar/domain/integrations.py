"""A job's ``integrations`` (contract §1.3): today OpenAI's one kind, Weights & Biases.

The API checks the request (api/schemas/integrations.py) and stores each integration in the shape
``to_json`` writes; the worker reads it back with ``wandb_integration`` and forwards the job's
training metrics (worker/wandb_sink.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WANDB = "wandb"
MAX_TAGS = 50
MAX_TAG_CHARS = 64


@dataclass(frozen=True)
class WandbIntegration:
    """Where a job's run goes: ``project`` (required), and the optional ``entity`` (team or user;
    the key's default entity when None), run ``name`` (the job id when None) and extra ``tags``."""

    project: str
    name: str | None = None
    entity: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """The stored and echoed form: ``{"type": "wandb", "wandb": {project, name, entity, tags}}``."""
        return {
            "type": WANDB,
            "wandb": {
                "project": self.project,
                "name": self.name,
                "entity": self.entity,
                "tags": list(self.tags),
            },
        }


def wandb_integration(integrations: list[Any] | None) -> WandbIntegration | None:
    """The job's W&B integration, from its stored ``integrations`` (None: the job has none)."""
    for item in integrations or []:
        if isinstance(item, dict) and item.get("type") == WANDB and isinstance(item.get(WANDB), dict):
            w = item[WANDB]
            return WandbIntegration(
                project=str(w["project"]),
                name=w.get("name"),
                entity=w.get("entity"),
                tags=tuple(str(t) for t in w.get("tags") or ()),
            )
    return None


def default_tags(job_id: str, base_model: str) -> tuple[str, ...]:
    """Afinar's counterparts of OpenAI's default run tags (``openai/finetune``, ``openai/<base>``,
    ``openai/<job id>``), cut to W&B's 64 characters per tag."""
    return tuple(t[:MAX_TAG_CHARS] for t in ("afinar/finetune", f"afinar/{base_model}", f"afinar/{job_id}"))

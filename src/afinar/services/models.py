"""Models: the catalogue's base models plus each organisation's fine-tuned models and checkpoints."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from afinar.domain.models import ServableModel
from afinar.errors import InvalidRequest, NotFound
from afinar.ids import parse_model_name
from afinar.store import jobs as repo

if TYPE_CHECKING:
    from afinar.services.container import Container

BASE_CREATED = 1730419200  # the catalogue has no creation date: a fixed, documented timestamp


@dataclass(frozen=True)
class ModelInfo:
    id: str
    created: int
    owned_by: str


def model_not_found(name: str) -> NotFound:
    return NotFound(
        f"The model `{name}` does not exist or you do not have access to it.", param="model", code="model_not_found"
    )


class ModelsService:
    def __init__(self, c: Container) -> None:
        self.c = c

    def list(self, org_id: str, org_slug: str) -> list[ModelInfo]:
        out = [ModelInfo(id=m, created=BASE_CREATED, owned_by="afinar") for m in self.c.catalog.ids()]
        with self.c.db.session() as s:
            for m in repo.list_models(s, org_id):
                out.append(ModelInfo(id=m.id, created=m.created_at, owned_by=org_slug))
                for ck in repo.checkpoints(s, m.job_id)[:3]:
                    out.append(ModelInfo(id=ck.model_name, created=ck.created_at, owned_by=org_slug))
        return out

    def get(self, org_id: str, org_slug: str, name: str) -> ModelInfo:
        for info in self.list(org_id, org_slug):
            if info.id == name:
                return info
        raise model_not_found(name)

    def delete(self, org_id: str, name: str) -> str:
        if self.c.catalog.get(name) is not None:
            raise InvalidRequest(
                f"The model '{name}' is a base model of the catalogue and cannot be deleted.",
                param="model",
                code="cannot_delete_base_model",
            )
        ref = parse_model_name(name)
        with self.c.db.session() as s:
            model = repo.get_model(s, org_id, name)
            if model is None:
                if ref.step is not None and repo.checkpoint_by_name(s, org_id, name) is not None:
                    raise InvalidRequest(
                        "Checkpoints are deleted with their fine-tuned model; delete that model instead.",
                        param="model",
                    )
                raise model_not_found(name)
            paths = [Path(model.adapter_path)] + [Path(ck.path) for ck in repo.checkpoints(s, model.job_id)]
            repo.delete_model(s, org_id, name)
        for p in paths:
            self._unload(p)
        job_dir = self.c.settings.jobs_dir / model.job_id
        shutil.rmtree(job_dir, ignore_errors=True)
        for p in paths:
            shutil.rmtree(p, ignore_errors=True)
        return name

    def _unload(self, adapter_path: Path) -> None:
        engine = self.c._engine  # only an engine that exists can hold the adapter
        if engine is not None and hasattr(engine, "unload"):
            engine.unload(adapter_path)

    def resolve_servable(self, org_id: str, name: str) -> ServableModel:
        entry = self.c.catalog.get(name)
        if entry is not None:
            path = self.c.catalog.local_path(entry, self.c.settings.models_dir)
            return ServableModel(name, entry.id, path, None, "afinar", BASE_CREATED)
        ref = parse_model_name(name)
        if ref.is_base:
            raise model_not_found(name)
        with self.c.db.session() as s:
            if ref.step is None:
                model = repo.get_model(s, org_id, name)
                adapter, created = (model.adapter_path, model.created_at) if model else (None, 0)
            else:
                ck = repo.checkpoint_by_name(s, org_id, name)
                parent = repo.get_model(s, org_id, ref.fine_tuned or "")
                adapter, created = (ck.path, ck.created_at) if ck and parent else (None, 0)
        base = self.c.catalog.get(ref.base)
        if adapter is None or base is None:
            raise model_not_found(name)
        base_path = self.c.catalog.local_path(base, self.c.settings.models_dir)
        return ServableModel(name, base.id, base_path, Path(adapter), org_id, created)

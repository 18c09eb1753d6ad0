"""Models: the catalogue's base models plus each organisation's fine-tuned models and checkpoints."""

from __future__ import annotations

import builtins
import json
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from afinar.domain.models import ServableModel
from afinar.errors import InvalidRequest, NotFound
from afinar.ids import parse_model_name
from afinar.inference.gguf import ADAPTER_GGUF
from afinar.services import audit
from afinar.services.model_card import CARD_NAME
from afinar.store import admin as admin_repo
from afinar.store import checkpoint_permissions as permissions_repo
from afinar.store import jobs as repo

if TYPE_CHECKING:
    from afinar.blobs.sealed import SealedBlobs
    from afinar.catalog.registry import Catalog
    from afinar.config import Settings
    from afinar.inference.protocol import InferenceEngine
    from afinar.services.artefacts import ArtefactsService
    from afinar.store.db import Database, Session

BASE_CREATED = 1730419200  # the catalogue has no creation date: a fixed, documented timestamp


@dataclass(frozen=True)
class ModelInfo:
    id: str
    created: int
    owned_by: str


def model_not_found(name: str) -> NotFound:
    return NotFound(
        f"The model `{name}` does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


def _shared_with_caller(s: Session, org_id: str, checkpoint: str) -> bool:
    """Whether a checkpoint permission (services/checkpoint_permissions.py) names the project the
    request is scoped to."""
    scope = admin_repo.current_scope()
    return scope is not None and permissions_repo.is_shared_with(s, org_id, checkpoint, scope.project_id)


class ModelsService:
    def __init__(
        self,
        *,
        db: Database,
        catalog: Catalog,
        settings: Settings,
        artefacts: ArtefactsService,
        sealed: SealedBlobs,
        loaded_engine: Callable[[], InferenceEngine | None],
    ) -> None:
        """``loaded_engine`` returns the inference engine if it was created (never creates it)."""
        self.db = db
        self.catalog = catalog
        self.settings = settings
        self.artefacts = artefacts
        self.sealed = sealed
        self.loaded_engine = loaded_engine

    def list(self, org_id: str, org_slug: str) -> list[ModelInfo]:
        out = [ModelInfo(id=m, created=BASE_CREATED, owned_by="afinar") for m in self.catalog.ids()]
        with self.db.session() as s:
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
        if self.catalog.get(name) is not None:
            raise InvalidRequest(
                f"The model '{name}' is a base model of the catalogue and cannot be deleted.",
                param="model",
                code="cannot_delete_base_model",
            )
        ref = parse_model_name(name)
        with self.db.session() as s:
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
        self.remove_artefacts(org_id, model.job_id, paths)
        audit.record(self.db, audit.MODEL_DELETED, org_id, name, project_id=model.project_id)
        return name

    def remove_artefacts(self, org_id: str, job_id: str, paths: Iterable[Path]) -> None:
        """The encrypted adapter and checkpoints, and any plaintext left in the job directory."""
        for p in paths:
            self.artefacts.delete(org_id, p)
            shutil.rmtree(p, ignore_errors=True)
        shutil.rmtree(self.settings.jobs_dir / job_id, ignore_errors=True)
        self.sealed.store.delete_prefix(f"{org_id}/models/{job_id}")

    def adapter_dir(self, org_id: str, name: str) -> Path:
        """The adapter directory of one of the caller's fine-tuned models or checkpoints."""
        servable = self.resolve_servable(org_id, name)
        if servable.adapter_path is None:
            raise InvalidRequest(
                f"'{name}' is a base model: only fine-tuned models have a card and an adapter.", param="model"
            )
        return servable.adapter_path

    def card(self, org_id: str, name: str) -> dict[str, Any]:
        """The card written when the model was published (a checkpoint: its model's); ``{}`` if none."""
        adapter = self.adapter_dir(org_id, name)
        ref = parse_model_name(name)
        return (
            self.artefacts.read_json(org_id, adapter, CARD_NAME)
            or self.artefacts.read_json(org_id, self._final_dir(org_id, ref.fine_tuned or name), CARD_NAME)
            or {}
        )

    def adapter_files(self, org_id: str, name: str) -> builtins.list[tuple[str, int]]:
        """(relative name, bytes) of each file of the adapter, as exported (decrypts to list)."""
        adapter = self.adapter_dir(org_id, name)
        return [(n, size) for n, size, _ in self.artefacts.members(org_id, adapter)]

    def _final_dir(self, org_id: str, name: str) -> Path:
        with self.db.session() as s:
            model = repo.get_model(s, org_id, name)
        return Path(model.adapter_path) if model else Path("/nonexistent")

    def export_archive(
        self,
        org_id: str,
        name: str,
        *,
        card: Callable[[str, dict[str, Any]], dict[str, Any]],
        exported_as: str | None = None,
    ) -> Iterator[bytes]:
        """A zip of the PEFT adapter (weights, config, tokenizer) with its model card, streamed.

        ``card(name, published card)`` gives the archive's ``model_card.json`` (the wire object
        ``afinar.model_card``: ``api/schemas/models.py``). Audited as a download, or as an export in
        the format ``exported_as`` (services/model_export.py)."""
        adapter = self.adapter_dir(org_id, name)
        exported = card(name, self.card(org_id, name))
        # plaintext past 64 MiB spills to an unnamed file in the private scratch dir, gone when closed
        buf = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed by chunks()
            max_size=64 * 1024 * 1024, dir=str(self.settings.scratch_dir)
        )
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for member, _size, stream in self.artefacts.members(org_id, adapter):
                skip = (CARD_NAME, "optimizer.pt", "state.json", ADAPTER_GGUF)  # the GGUF: format=gguf
                if PurePosixPath(member).name not in skip:
                    with zf.open(member, "w") as out:
                        shutil.copyfileobj(stream, out, 1024 * 1024)
            zf.writestr(CARD_NAME, json.dumps(exported, indent=2, sort_keys=True))
        buf.seek(0)

        def chunks() -> Iterator[bytes]:
            with buf:
                while chunk := buf.read(1024 * 1024):
                    yield chunk

        if exported_as is None:
            audit.record(self.db, audit.MODEL_DOWNLOADED, org_id, name)
        else:
            audit.record(self.db, audit.MODEL_EXPORTED, org_id, name, format=exported_as)
        return chunks()

    def _unload(self, adapter_path: Path) -> None:
        engine = self.loaded_engine()  # only an engine that exists can hold the adapter
        if engine is not None and hasattr(engine, "unload"):
            engine.unload(adapter_path)

    def resolve_servable(self, org_id: str, name: str) -> ServableModel:
        entry = self.catalog.get(name)
        if entry is not None:
            path = self.catalog.local_path(entry, self.settings.models_dir)
            return ServableModel(name, entry.id, path, None, "afinar", BASE_CREATED)
        ref = parse_model_name(name)
        if ref.is_base:
            raise model_not_found(name)
        with self.db.session() as s:
            if ref.step is None:
                model = repo.get_model(s, org_id, name)
                adapter, created = (model.adapter_path, model.created_at) if model else (None, 0)
            else:
                ck = repo.checkpoint_by_name(s, org_id, name)
                parent = repo.get_model(s, org_id, ref.fine_tuned or "")
                if ck is not None and parent is None and _shared_with_caller(s, org_id, name):
                    with admin_repo.scoped(None):  # another project's checkpoint, shared with this one
                        parent = repo.get_model(s, org_id, ref.fine_tuned or "")
                adapter, created = (ck.path, ck.created_at) if ck and parent else (None, 0)
        base = self.catalog.get(ref.base)
        if adapter is None or base is None:
            raise model_not_found(name)
        base_path = self.catalog.local_path(base, self.settings.models_dir)
        return ServableModel(name, base.id, base_path, Path(adapter), org_id, created)

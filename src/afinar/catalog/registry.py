"""The catalogue of base models, read from the bundled ``models.toml`` plus an operator file."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from afinar.catalog.entry import BaseModelEntry
from afinar.errors import InvalidRequest


def _entries(text: str) -> list[BaseModelEntry]:
    data = tomllib.loads(text)
    out = []
    for raw in data.get("models", []):
        raw = dict(raw)
        known = {k: raw.pop(k) for k in list(raw) if k in BaseModelEntry.__dataclass_fields__}
        if "lora_target_modules" in known:
            known["lora_target_modules"] = tuple(known["lora_target_modules"])
        out.append(BaseModelEntry(**known, extra=raw))
    return out


class Catalog:
    def __init__(self, entries: list[BaseModelEntry]) -> None:
        self._by_id = {e.id: e for e in entries}

    @classmethod
    def load(cls, extra_file: Path | None = None) -> Catalog:
        entries = _entries(resources.files("afinar.catalog").joinpath("models.toml").read_text())
        if extra_file is not None:
            entries += _entries(Path(extra_file).read_text())
        return cls(entries)

    def ids(self) -> list[str]:
        return list(self._by_id)

    def get(self, model_id: str) -> BaseModelEntry | None:
        return self._by_id.get(model_id)

    def require(self, model_id: str, param: str = "model") -> BaseModelEntry:
        entry = self.get(model_id)
        if entry is None:
            raise InvalidRequest(
                f"Model {model_id} is not available for fine-tuning or does not exist.",
                param=param,
                code="model_not_available",
            )
        return entry

    def local_path(self, entry: BaseModelEntry, models_dir: Path) -> Path:
        """A Hugging Face-format directory for the model, converting or locating it offline."""
        if entry.source == "local":
            assert entry.path, f"catalogue entry {entry.id} needs a path"
            return Path(entry.path)
        if entry.source == "bundled":
            from afinar.catalog.bundled import ensure_converted

            return ensure_converted(entry, models_dir / entry.id)
        if entry.source == "hub":
            from afinar.catalog.hub import ensure_downloaded

            return ensure_downloaded(entry, models_dir / entry.id)
        raise ValueError(f"unknown model source {entry.source!r}")

"""What the serving path needs to know about a model name once it is resolved."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServableModel:
    name: str  # what the caller asked for (base id, ft: name, or checkpoint name)
    base_id: str  # catalogue id of the base model
    base_path: Path  # Hugging Face-format directory of the base model
    adapter_path: Path | None  # PEFT adapter directory, None for a base model
    owned_by: str
    created: int

"""The base model's side of the safety evaluation, remembered between jobs.

Every evaluation asks the base and the tuned model the same prompts with greedy decoding. The
base's answers only change when its weights, the prompts, the generation length, the system
prompt or the refusal classifier change, so its per-prompt *refusal outcomes* (booleans, never
the generated text) are stored under a key made of exactly those, and the next job on the same
base asks only its tuned model: half the generations.

Entries are small JSON files under ``<data_dir>/cache/safety-base/``, written atomically; they
hold nothing of any customer (public prompts, a catalogue model). A damaged or foreign entry is
ignored and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from afinar.safety.evaluation import SafetyPrompt

FORMAT = 1


def weights_fingerprint(model_dir: Path) -> list[tuple[str, int, int]]:
    """Name, size and modification time of the model's weight and config files."""
    found = []
    for path in sorted(Path(model_dir).glob("*")):
        if path.is_file() and path.suffix in (".safetensors", ".json"):
            st = path.stat()
            found.append((path.name, st.st_size, st.st_mtime_ns))
    return found


def cache_key(
    *,
    base_id: str,
    model_dir: Path,
    prompts: Sequence[SafetyPrompt],
    max_new_tokens: int,
    classifier: Any,
    system_prompt: str | None,
) -> str:
    """A digest of everything that decides the base's refusal outcomes."""
    material = {
        "format": FORMAT,
        "base": base_id,
        "weights": weights_fingerprint(model_dir),
        "prompts": [(p.id, p.category, p.prompt, p.forbidden) for p in prompts],
        "max_new_tokens": max_new_tokens,
        "classifier": getattr(classifier, "name", type(classifier).__name__),
        "patterns": [*getattr(classifier, "patterns", ()), *getattr(classifier, "templates", ())],
        "system_prompt": system_prompt,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


class BaseRefusalCache:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def get(self, key: str, prompts: Sequence[SafetyPrompt]) -> dict[str, bool] | None:
        """The stored outcomes when they cover every prompt, else None."""
        try:
            data = json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            return None
        refused = data.get("refused") if isinstance(data, dict) and data.get("key") == key else None
        if not isinstance(refused, dict) or any(not isinstance(refused.get(p.id), bool) for p in prompts):
            return None
        return {p.id: refused[p.id] for p in prompts}

    def put(self, key: str, refused: Mapping[str, bool]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump({"key": key, "refused": dict(refused)}, out)
            os.replace(tmp, self._path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

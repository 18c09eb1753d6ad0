"""Evals as plain values: run statuses, eval data rows, and what a checked request asks for.

The API edge (``api/schemas/evals.py``) turns request bodies into these; the evals services
(``services/evals.py``, ``services/eval_runs.py``) act on them without checking them again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Run statuses: queued → in_progress → completed | failed | canceled.
QUEUED, IN_PROGRESS, COMPLETED, FAILED, CANCELED = "queued", "in_progress", "completed", "failed", "canceled"
FINISHED = (COMPLETED, FAILED, CANCELED)

MAX_ITEMS = 10_000  # items in one run


@dataclass(frozen=True)
class Row:
    """One eval data item, with the sample graded when the data gives it (``jsonl`` runs)."""

    item: dict[str, Any]
    sample: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"item": self.item}
        if self.sample is not None:
            out["sample"] = self.sample
        return out

    @staticmethod
    def from_json(raw: dict[str, Any]) -> Row:
        return Row(raw["item"], raw.get("sample"))


@dataclass(frozen=True)
class NewEval:
    """A checked ``POST /v1/evals``: the stored data source config and normalised criteria."""

    name: str
    data_source_config: dict[str, Any]
    testing_criteria: list[dict[str, Any]]
    metadata: dict[str, str] | None = None


@dataclass(frozen=True)
class EvalUpdate:
    """A checked ``POST /v1/evals/{id}``: ``name`` None keeps the name; metadata only when given."""

    name: str | None = None
    metadata_given: bool = False
    metadata: dict[str, str] | None = None


@dataclass(frozen=True)
class DataSource:
    """A run's data source, checked for shape: its items (inline) or their file, the model and
    the generation settings of a ``completions`` source. ``source`` is echoed as given."""

    kind: str  # "jsonl" | "completions"
    source: dict[str, Any]
    rows: tuple[Row, ...] | None = None  # file_content items
    file_id: str | None = None  # file_id items, read when the run is created
    model: str | None = None
    input_messages: dict[str, Any] | None = None
    sampling_params: dict[str, Any] | None = None

    def echo(self) -> dict[str, Any]:
        """The data source as the run object shows it."""
        out: dict[str, Any] = {"type": self.kind, "source": self.source}
        if self.kind == "completions":
            out["model"] = self.model
            out["input_messages"] = self.input_messages
            out["sampling_params"] = self.sampling_params
        return out


@dataclass(frozen=True)
class NewRun:
    """A checked ``POST /v1/evals/{id}/runs``."""

    data_source: DataSource
    name: str | None = None
    metadata: dict[str, str] | None = None

"""The create-job form: its fields, read from a submitted form into the API's job request, checked
by the same request model (``api/schemas/jobs.py``) into the ``JobSpec`` the jobs service takes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from afinar.api.deps import parse_body
from afinar.api.schemas.jobs import CreateJobRequest
from afinar.domain.jobs import JobSpec
from afinar.errors import InvalidRequest

HYPER_FIELDS = ("n_epochs", "batch_size", "learning_rate_multiplier")
LABELS = {
    "n_epochs": "Epochs",
    "batch_size": "Batch size",
    "learning_rate_multiplier": "Learning-rate multiplier",
    "seed": "Seed",
}


@dataclass
class JobForm:
    model: str = ""
    training_file: str = ""
    validation_file: str = ""
    suffix: str = ""
    seed: str = ""
    hyper: dict[str, str] = field(default_factory=lambda: dict.fromkeys(HYPER_FIELDS, ""))

    @classmethod
    def read(cls, data: Mapping[str, Any]) -> JobForm:
        def text(name: str) -> str:
            value = data.get(name)
            return value.strip() if isinstance(value, str) else ""

        return cls(
            model=text("model"),
            training_file=text("training_file"),
            validation_file=text("validation_file"),
            suffix=text("suffix"),
            seed=text("seed"),
            hyper={k: text(k) for k in HYPER_FIELDS},
        )

    def hyperparameters(self) -> dict[str, Any]:
        """Blank or "auto" → "auto"; otherwise the number (ranges are checked by the service)."""
        out: dict[str, Any] = {}
        for key, raw in self.hyper.items():
            if raw in ("", "auto"):
                out[key] = "auto"
                continue
            try:
                out[key] = float(raw) if key == "learning_rate_multiplier" else int(raw)
            except ValueError:
                raise InvalidRequest(
                    f"{LABELS[key]} must be a number or 'auto', not '{raw}'.", param=key
                ) from None
        return out

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "training_file": self.training_file,
            "method": {"type": "supervised", "supervised": {"hyperparameters": self.hyperparameters()}},
        }
        if self.validation_file:
            body["validation_file"] = self.validation_file
        if self.suffix:
            body["suffix"] = self.suffix
        if self.seed:
            try:
                body["seed"] = int(self.seed)
            except ValueError:
                raise InvalidRequest(
                    f"Seed must be a whole number, not '{self.seed}'.", param="seed"
                ) from None
        return body

    def spec(self) -> JobSpec:
        """The job this form asks for, checked as the API checks a request body (``InvalidRequest``)."""
        return parse_body(CreateJobRequest, self.body()).to_domain()

"""What the models pages show: each model's kind, and a fine-tuned model's card and adapter archive."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from afinar.catalog.entry import BaseModelEntry
from afinar.errors import AfinarError, NotFound
from afinar.ids import parse_model_name

if TYPE_CHECKING:
    from afinar.services.container import Container
    from afinar.services.models import ModelInfo
    from afinar.store.tables import Checkpoint, Job


@dataclass(frozen=True)
class ModelRow:
    id: str
    kind: str  # "base" | "fine-tuned" | "checkpoint"
    base: str
    created: int


@dataclass
class ModelCard:
    id: str
    kind: str
    base: BaseModelEntry | None
    created: int
    job: Job | None = None
    checkpoints: list[Checkpoint] = field(default_factory=list)
    adapter_files: list[tuple[str, int]] = field(default_factory=list)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    training_filename: str = ""
    published: dict[str, Any] = field(default_factory=dict)  # the card written when the model was published
    eval_name: str | None = None  # the name of the eval its eval gate ran (None: no gate, or deleted)

    @property
    def checks(self) -> dict[str, Any]:
        checks = self.published.get("checks")
        return checks if isinstance(checks, dict) else {}


def rows(infos: list[ModelInfo]) -> list[ModelRow]:
    out = []
    for m in infos:
        ref = parse_model_name(m.id)
        kind = "base" if ref.is_base else ("checkpoint" if ref.step is not None else "fine-tuned")
        out.append(ModelRow(m.id, kind, ref.base, m.created))
    return out


def _job_of(c: Container, org_id: str, fine_tuned: str) -> Job | None:
    jobs = c.jobs.list(org_id, after=None, limit=10000, metadata=None, no_metadata=False).items
    return next((j for j in jobs if j.fine_tuned_model == fine_tuned), None)


def card(c: Container, org_id: str, org_slug: str, name: str) -> ModelCard:
    """The card of a model this organisation can use (raises NotFound otherwise)."""
    info = c.models.get(org_id, org_slug, name)
    row = rows([info])[0]
    result = ModelCard(info.id, row.kind, c.catalog.get(row.base), info.created)
    if row.kind == "base":
        return result
    ref = parse_model_name(name)
    result.job = _job_of(c, org_id, ref.fine_tuned or name)
    if result.job is not None:
        result.checkpoints = c.jobs.checkpoints(org_id, result.job.id, after=None, limit=10).items
        result.hyperparameters = dict(result.job.resolved_hyperparameters or {})
        try:
            result.training_filename = c.files.get(org_id, result.job.training_file).filename
        except NotFound:
            result.training_filename = f"{result.job.training_file} (deleted)"
    try:
        result.published = c.models.card(org_id, name)
    except AfinarError:
        result.published = {}
    result.eval_name = _eval_name(c, org_id, result.checks.get("eval_gate"))
    try:  # the adapter is stored encrypted: the models service lists it as it would export it
        result.adapter_files = sorted(c.models.adapter_files(org_id, name))
    except NotFound:
        result.adapter_files = []
    return result


def _eval_name(c: Container, org_id: str, gate: Any) -> str | None:
    if not isinstance(gate, dict) or not isinstance(gate.get("eval_id"), str):
        return None
    try:
        return c.evals.get(org_id, gate["eval_id"]).name
    except NotFound:
        return None


def gate_rule(rule: Any) -> str:
    """An eval gate's rule in words: ``pass rate ≥ 50.0%; beat the base by ≥ +0.0 pts (on "exact")``."""
    if not isinstance(rule, dict):
        return "—"
    parts = []
    if rule.get("min_pass_rate") is not None:
        parts.append(f"pass rate ≥ {100 * rule['min_pass_rate']:.1f}%")
    if rule.get("beat_base_by") is not None:
        parts.append(f"beat the base by ≥ {100 * rule['beat_base_by']:+.1f} pts")
    text = "; ".join(parts) or "—"
    if rule.get("testing_criteria"):
        text += f" (on criterion “{rule['testing_criteria']}”)"
    return text


def archive_name(name: str) -> str:
    return name.replace(":", "_").strip("_") + "-adapter.zip"

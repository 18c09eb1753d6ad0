"""What a post-training gate (safety evaluation, eval gate) decides about a tuned model.

A gate only judges and records; it never fails a job itself. The job runner reads the verdict
and, when ``passed`` is false, fails the job with ``error`` so the model is never served.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GateVerdict:
    gate: str  # "safety" or "eval_gate": its key in the model card's ``checks``
    passed: bool
    message: str  # one line for the job's events
    details: dict[str, Any] = field(default_factory=dict)  # what goes into ``checks[gate]``
    error_code: str | None = None  # the job's ``error.code`` when the gate fails it

    def job_error(self) -> dict[str, Any]:
        """The job's ``error`` object when this verdict fails it."""
        return {"code": self.error_code, "message": self.message, "param": None}

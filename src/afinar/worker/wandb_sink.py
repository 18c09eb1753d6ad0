"""Forward a job's training metrics to Weights & Biases, for jobs created with
``integrations: [{"type": "wandb", "wandb": {...}}]`` (domain/integrations.py).

One W&B run per job, opened when training starts (or resumes) and finished when the runner is done
with the job: its id is the job id (a resumed job continues the same run online), its name the
given ``name`` or the job id, its tags Afinar's defaults (``afinar/finetune``, ``afinar/<base>``,
``afinar/<job id>``) then the user's, its config the job's hyperparameters. Each step event's
numbers are logged at the training step; the run's summary gets the outcome.

The ``wandb`` library does the talking, with its own environment: ``WANDB_API_KEY`` (or a netrc
entry for ``WANDB_BASE_URL``'s host), ``WANDB_MODE=offline`` (runs written under ``WANDB_DIR``,
by default ``<data dir>/wandb``, for ``wandb sync`` later). A worker without credentials says so in
a job event and trains anyway; nothing W&B does ever fails a job: a W&B error becomes one warning
event and the run is dropped. ``wandb`` is imported only here, and only for jobs that ask for it.
"""

from __future__ import annotations

import logging
import netrc
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from afinar.domain.integrations import WandbIntegration, default_tags, wandb_integration
from afinar.domain.jobs import JobStatus
from afinar.store.tables import Job

log = logging.getLogger("afinar.worker.wandb")

Note = Callable[[str], None]  # writes a warning event on the job
OFFLINE_MODES = ("offline", "dryrun")
DEFAULT_BASE_URL = "https://api.wandb.ai"


def credentials_problem(env: Mapping[str, str]) -> str | None:
    """Why ``wandb`` could not log from this worker (None: it can). Offline mode needs nothing; online
    needs ``WANDB_API_KEY`` or a netrc entry for the W&B host, as ``wandb login`` writes it."""
    mode = env.get("WANDB_MODE", "").lower()
    if mode in OFFLINE_MODES:
        return None
    if mode == "disabled":
        return "WANDB_MODE=disabled on this worker"
    if env.get("WANDB_API_KEY"):
        return None
    host = urlparse(env.get("WANDB_BASE_URL") or DEFAULT_BASE_URL).hostname or ""
    path = env.get("NETRC") or str(Path(env.get("HOME") or Path.home()) / ".netrc")
    try:
        if netrc.netrc(path).authenticators(host):
            return None
    except (OSError, netrc.NetrcParseError):
        pass
    return (
        "no Weights & Biases credentials on this worker (set WANDB_API_KEY, run `wandb login`, "
        "or set WANDB_MODE=offline)"
    )


def numbers(metrics: Mapping[str, Any]) -> dict[str, float | int]:
    """The loggable part of a step's metrics: numbers only (no ``None``, no device name)."""
    return {
        k: v
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and k not in ("step", "total_steps")
    }


def run_config(job: Job) -> dict[str, Any]:
    """The run's config: what the job was asked to do, hyperparameters resolved."""
    return {
        "job_id": job.id,
        "model": job.model,
        "method": (job.method or {}).get("type", "supervised"),
        "hyperparameters": dict(job.resolved_hyperparameters or job.requested_hyperparameters or {}),
        "training_file": job.training_file,
        "validation_file": job.validation_file,
        "seed": job.seed,
        "suffix": job.suffix,
        "quantization": job.quantization or "none",
    }


class NoSink:
    """A job without the integration, or whose run could not start: every call does nothing."""

    def log(self, metrics: Mapping[str, Any]) -> None:
        """Nothing to forward."""

    def finish(self, job: Job | None) -> None:
        """Nothing to close."""


class WandbSink(NoSink):
    """A job's open W&B run. Any W&B error is noted once on the job and ends the forwarding."""

    def __init__(self, run: Any, note: Note) -> None:
        self.run: Any | None = run
        self.note = note

    def log(self, metrics: Mapping[str, Any]) -> None:
        if self.run is None:
            return
        step = metrics.get("step")
        try:
            self.run.log(numbers(metrics), step=int(step) if isinstance(step, int) else None)
        except Exception as exc:
            self._drop(exc)

    def finish(self, job: Job | None) -> None:
        """Close the run with the job's outcome (exit code 0 when it succeeded or paused)."""
        if self.run is None:
            return
        status = job.status if job is not None else None
        try:
            if job is not None:
                self.run.summary.update(
                    {
                        "status": status,
                        "fine_tuned_model": job.fine_tuned_model,
                        "trained_tokens": job.trained_tokens,
                    }
                )
            self.run.finish(exit_code=0 if status in (JobStatus.SUCCEEDED, JobStatus.PAUSED) else 1)
        except Exception as exc:
            self._drop(exc)
        self.run = None

    def _drop(self, exc: Exception) -> None:
        log.warning("W&B run dropped: %s", exc, exc_info=True)
        run, self.run = self.run, None
        _safe_note(self.note, f"wandb integration stopped: {exc}")
        try:
            run.finish(exit_code=1)  # type: ignore[union-attr]
        except Exception:
            log.debug("finishing the dropped W&B run failed too", exc_info=True)


def start(job: Job, *, data_dir: Path, note: Note) -> NoSink:
    """The job's sink: a W&B run when the job asks for one and this worker can log, else ``NoSink``
    (with a ``wandb integration skipped: …`` event when it asked)."""
    target = wandb_integration(job.integrations)
    if target is None:
        return NoSink()
    problem = credentials_problem(os.environ)
    if problem is not None:
        _safe_note(note, f"wandb integration skipped: {problem}; training goes on without it")
        return NoSink()
    try:
        run = _init(job, target, Path(os.environ.get("WANDB_DIR") or data_dir / "wandb"))
    except Exception as exc:  # never fail the job over W&B
        log.warning("job %s: W&B run failed to start", job.id, exc_info=True)
        _safe_note(note, f"wandb integration skipped: the run could not start ({exc}); training goes on")
        return NoSink()
    return WandbSink(run, note)


def _init(job: Job, target: WandbIntegration, directory: Path) -> Any:
    import wandb  # only workers with a W&B job pay for the import

    directory.mkdir(parents=True, exist_ok=True)
    tags = list(dict.fromkeys(default_tags(job.id, job.model) + target.tags))
    return wandb.init(
        project=target.project,
        entity=target.entity,
        name=target.name or job.id,
        tags=tags,
        id=job.id,
        resume="allow",
        reinit="create_new",  # a worker trains several jobs at once: one independent run each
        job_type="fine-tune",
        dir=str(directory),
        config=run_config(job),
        settings=wandb.Settings(
            silent=True,
            console="off",
            disable_git=True,
            save_code=False,
            init_timeout=60,
            x_disable_stats=True,
            x_save_requirements=False,
        ),
    )


def _safe_note(note: Note, message: str) -> None:
    try:
        note(message)
    except Exception:  # the lease may be gone: the event is lost, never the worker
        log.warning("could not record %r on the job", message, exc_info=True)

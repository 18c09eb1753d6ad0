"""Publishing a trained model: the last step of the job pipeline, after the gates.

``Publisher.publish`` writes the model card beside the adapter (``services/model_card.py``),
converts the adapter to a GGUF LoRA for the llama.cpp backend (``adapter.gguf``, sealed with the
adapter; a failed conversion is a job event, not a failed job: serving converts on first use),
stores the ``fine-tune-results`` CSV (``services/results.py``), seals the adapter and the
published checkpoints (``services/artefacts.py``), then, in one transaction fenced by the job's
lease, creates the ``FineTunedModel`` row, marks the job succeeded and bills it (the billing
hook). When any of it fails, what it stored is removed again and the error propagates: the model
is never half published.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from afinar.domain.jobs import JobStatus
from afinar.domain.webhooks import JOB_SUCCEEDED
from afinar.services.model_card import build_card, write_card
from afinar.services.results import results_csv
from afinar.store import jobs as repo
from afinar.store import webhooks as outbox
from afinar.store.tables import FineTunedModel

if TYPE_CHECKING:
    from afinar.blobs.sealed import SealedBlobs
    from afinar.catalog.registry import Catalog
    from afinar.config import Settings
    from afinar.domain.jobs import FencedWrite, TrainedAdapter
    from afinar.services.artefacts import ArtefactsService
    from afinar.services.files import FilesService
    from afinar.services.usage import UsageBilling
    from afinar.store.db import Database
    from afinar.store.tables import Job

log = logging.getLogger(__name__)


class Publisher:
    def __init__(
        self,
        *,
        db: Database,
        settings: Settings,
        catalog: Catalog,
        files: FilesService,
        artefacts: ArtefactsService,
        sealed: SealedBlobs,
        usage: UsageBilling,
    ) -> None:
        self.db = db
        self.settings = settings
        self.catalog = catalog
        self.files = files
        self.artefacts = artefacts
        self.sealed = sealed
        self.usage = usage

    def publish(
        self,
        job: Job,
        trained: TrainedAdapter,
        checks: dict[str, Any],
        *,
        write: FencedWrite,
        release: Callable[[Any], None],
    ) -> None:
        """Publish ``job``'s adapter with the gates' ``checks``; ``release(session)`` lets the job's
        lease go inside the transaction that marks it succeeded."""
        with self.db.session() as s:
            metrics = [e.data for e in repo.metrics_events(s, job.id) if e.data]
        card = build_card(
            job,
            files=self.files,
            catalog=self.catalog,
            created_at=int(self.db.now()),
            trained_tokens=trained.trained_tokens,
            metrics=metrics,
            checks=checks,
            training=trained.training,
        )
        write_card(trained.adapter_path, card)
        self._adapter_gguf(job, trained.adapter_path, write)
        csv_bytes = results_csv(metrics, as_base64=self.settings.results_csv_base64)
        results = self.files.store(
            job.org_id, "step_metrics.csv", "fine-tune-results", [csv_bytes], project_id=job.project_id
        )
        try:
            sealed = self._seal_artefacts(job, trained.adapter_path)
        except BaseException:
            self.files.delete(job.org_id, results.id)
            raise

        def _do(s: Any, j: Job) -> None:
            now = int(self.db.now())
            s.add(
                FineTunedModel(
                    id=j.model_name,
                    org_id=j.org_id,
                    project_id=j.project_id,
                    job_id=j.id,
                    base_model=j.model,
                    owned_by=j.org_id,
                    created_at=now,
                    adapter_path=str(trained.adapter_path),
                )
            )
            j.status = JobStatus.SUCCEEDED
            j.fine_tuned_model = j.model_name
            j.trained_tokens = trained.trained_tokens
            # BILLING HOOK: the training record, in the same transaction that marks the job succeeded.
            self.usage.bill_training(s, j, j.trained_tokens)
            j.result_files = [results.id]
            j.finished_at = now
            j.estimated_finish = None
            j.current_step = trained.step
            repo.add_event(s, j, f"New fine-tuned model created: {j.model_name}")
            repo.add_event(s, j, "The job has successfully completed")
            outbox.emit(s, JOB_SUCCEEDED, j)  # the webhook event commits with the success
            release(s)

        try:
            write(_do)
        except BaseException:
            self.files.delete(job.org_id, results.id)
            for key in sealed:
                self.sealed.delete(key)
            raise

    def _adapter_gguf(self, job: Job, adapter: Path, write: FencedWrite) -> None:
        """Write ``adapter.gguf`` into the adapter directory when the llama.cpp converters are
        installed and ``AFINAR_GGUF_AT_PUBLISH`` allows it (unset: when the backend is llama.cpp)."""
        from afinar.inference import gguf
        from afinar.inference.backends import resolve_backend

        wanted = self.settings.gguf_at_publish
        if wanted is None:
            wanted = resolve_backend(self.settings) == "llamacpp"
        if not wanted or not (adapter / "adapter_config.json").is_file() or not gguf.can_convert():
            return  # a full fine-tune is served as its own base: nothing to convert
        try:
            base = self.catalog.local_path(self.catalog.require(job.model), self.settings.models_dir)
            gguf.adapter_gguf(adapter, base, adapter / gguf.ADAPTER_GGUF)
        except Exception as exc:
            log.warning("job %s: GGUF conversion of its adapter failed: %s", job.id, exc)
            detail = str(exc).removeprefix("GGUF conversion failed: ")[-500:]
            message = f"GGUF conversion failed: {detail} (it is converted when first served)"
            write(lambda s, j: repo.add_event(s, j, message, level="warning"))

    def _seal_artefacts(self, job: Job, final: Path) -> list[str]:
        """Encrypt the final adapter and the published checkpoints (without resume state)."""
        with self.db.session() as s:
            dirs = [final] + [Path(ck.path) for ck in repo.checkpoints(s, job.id)]
        return [self.artefacts.seal(job.org_id, d) for d in dirs if d.is_dir()]

"""The composition root: one object built from Settings that holds every component."""

from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any, Self, TypeVar, overload

from afinar.blobs.factory import open_blob_store
from afinar.blobs.local import BlobStore
from afinar.blobs.scratch import Scratch
from afinar.catalog.registry import Catalog
from afinar.clock import Clock, system_clock
from afinar.config import Settings
from afinar.store.db import Database

if TYPE_CHECKING:
    from afinar.blobs.sealed import SealedBlobs
    from afinar.crypto.keys import KeyRing
    from afinar.domain.models import ServableModel
    from afinar.inference.protocol import InferenceEngine
    from afinar.safety.moderation import ModerationEngine
    from afinar.services.api_keys import ApiKeysService
    from afinar.services.artefacts import ArtefactsService
    from afinar.services.chat import ChatService
    from afinar.services.checkpoint_permissions import CheckpointPermissionsService
    from afinar.services.erasure import ErasureService
    from afinar.services.eval_compare import EvalComparisonsService
    from afinar.services.eval_gates import EvalGatesService
    from afinar.services.eval_items import EvalOutputItemsService
    from afinar.services.eval_runs import EvalRunsService
    from afinar.services.evals import EvalsService
    from afinar.services.export import Exporter
    from afinar.services.files import FilesService
    from afinar.services.graders import GradersService
    from afinar.services.jobs import JobsService
    from afinar.services.metrics import ServingMetrics
    from afinar.services.model_export import ModelExporter
    from afinar.services.models import ModelsService
    from afinar.services.org_settings import OrgSettingsService
    from afinar.services.projects import ProjectsService
    from afinar.services.publication import Publisher
    from afinar.services.readiness import ReadinessService
    from afinar.services.reports import ReportsService
    from afinar.services.responses import ResponsesService
    from afinar.services.retention import RetentionService
    from afinar.services.safety_gate import SafetyGate
    from afinar.services.screening import FileScreening
    from afinar.services.service_accounts import ServiceAccountsService
    from afinar.services.spend_limits import SpendLimits
    from afinar.services.throughput import ThroughputRecords
    from afinar.services.usage import UsageBilling
    from afinar.services.usage_reports import UsageReports
    from afinar.services.users import UsersService
    from afinar.services.validation import ValidationStep
    from afinar.services.webhook_delivery import WebhookDeliverer
    from afinar.services.webhooks import WebhooksService
    from afinar.services.workers import WorkersService
    from afinar.store.shared_state import SharedState


T = TypeVar("T")


class built_once(cached_property[T]):
    """A ``cached_property`` built under the container's lock: two request threads asking for a
    service at once get the same instance (Python 3.12 dropped cached_property's own lock)."""

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(self, instance: object, owner: type[Any] | None = None) -> T: ...
    def __get__(self, instance: object | None, owner: type[Any] | None = None) -> T | Self:
        if instance is None:
            return self
        with instance._build_lock:  # type: ignore[attr-defined]
            return super().__get__(instance, owner)


class Container:
    def __init__(
        self, settings: Settings, *, engine: InferenceEngine | None = None, clock: Clock = system_clock
    ) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(settings.resolved_database_url(), clock)
        self._seal_columns()
        # Ciphertext only (customer data goes via ``sealed``): a local directory or S3 (AFINAR_BLOB_URL).
        self.blobs: BlobStore = open_blob_store(settings.blob_url, settings.blobs_dir)
        self.scratch = Scratch(settings.scratch_dir)
        self.scratch.sweep()  # plaintext left by a crashed process
        self.catalog = Catalog.load(settings.catalog_file)
        self._engine: InferenceEngine | None = engine  # None: the configured backend, on first use
        self._engine_lock = threading.Lock()
        self._build_lock = threading.RLock()  # services build each other: reentrant

    @property
    def clock(self) -> Clock:
        """The one clock (Unix seconds) that stamps jobs, events, leases, usage and audit records."""
        return self.db.clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self.db.clock = clock

    def migrate(self) -> None:
        self.db.migrate()

    def _seal_columns(self) -> None:
        """Customer text in eval columns is sealed with the org's key (store/sealed_columns.py)."""
        from afinar.store.sealed_columns import ColumnSealer, install

        install(
            self.db,
            ColumnSealer(lambda org: self.keys.data_key(org), lambda org: self.keys.existing_key(org)),
        )

    @built_once
    def keys(self) -> KeyRing:
        """Per-organisation data keys, wrapped by the master key (docs/architecture.md)."""
        from afinar.crypto.keys import KeyRing, load_master_key
        from afinar.store import org_keys

        return KeyRing(
            load_master_key(self.settings),
            lambda org_id: org_keys.load(self.db, org_id),
            lambda org_id, wrapped: org_keys.insert(self.db, org_id, wrapped),
        )

    @built_once
    def shared_state(self) -> SharedState:
        """Rate-limit counters and dashboard sessions every API node sees (database or Redis)."""
        from afinar.store.shared_state import shared_state

        return shared_state(self.db, self.settings.redis_url, self.settings.redis_prefix)

    @built_once
    def sealed(self) -> SealedBlobs:
        """The blob store with encryption at rest: every customer byte goes through here."""
        from afinar.blobs.sealed import SealedBlobs

        return SealedBlobs(self.blobs, self.keys, self.scratch)

    @built_once
    def files(self) -> FilesService:
        from afinar.services.files import FilesService

        return FilesService(db=self.db, sealed=self.sealed, blobs=self.blobs, settings=self.settings)

    @built_once
    def screening(self) -> FileScreening:
        """The data screen of the job pipeline (and of the file report)."""
        from afinar.services.screening import FileScreening

        return FileScreening(files=self.files, moderation=lambda: self.moderation, settings=self.settings)

    @built_once
    def validation(self) -> ValidationStep:
        """The ``validating_files`` step of the job pipeline (and of reports and estimates)."""
        from afinar.services.validation import ValidationStep

        return ValidationStep(
            files=self.files,
            catalog=self.catalog,
            settings=self.settings,
            screening=self.screening,
            spend_limits=self.spend_limits,
        )

    @built_once
    def jobs(self) -> JobsService:
        from afinar.services.jobs import JobsService

        return JobsService(db=self.db, catalog=self.catalog, eval_gates=self.eval_gates)

    @built_once
    def reports(self) -> ReportsService:
        from afinar.services.reports import ReportsService

        return ReportsService(
            files=self.files,
            jobs=self.jobs,
            catalog=self.catalog,
            settings=self.settings,
            validation=self.validation,
            screening=self.screening,
            usage=self.usage,
            throughput=self.throughput,
        )

    @built_once
    def throughput(self) -> ThroughputRecords:
        """Measured training speeds per base model and device, for estimates (services/throughput.py)."""
        from afinar.services.throughput import ThroughputRecords

        return ThroughputRecords(db=self.db, catalog=self.catalog)

    @built_once
    def models(self) -> ModelsService:
        from afinar.services.models import ModelsService

        return ModelsService(
            db=self.db,
            catalog=self.catalog,
            settings=self.settings,
            artefacts=self.artefacts,
            sealed=self.sealed,
            loaded_engine=lambda: self._engine,
        )

    @built_once
    def model_export(self) -> ModelExporter:
        """A tuned model as a merged folder, a GGUF with an Ollama Modelfile, or its adapter."""
        from afinar.services.model_export import ModelExporter

        return ModelExporter(
            db=self.db,
            settings=self.settings,
            models=self.models,
            artefacts=self.artefacts,
            scratch=self.scratch,
        )

    @built_once
    def artefacts(self) -> ArtefactsService:
        from afinar.services.artefacts import ArtefactsService

        return ArtefactsService(db=self.db, settings=self.settings, sealed=self.sealed, scratch=self.scratch)

    @built_once
    def safety_gate(self) -> SafetyGate:
        """The job pipeline's safety evaluation of a tuned model (and its time estimate)."""
        from afinar.services.safety_gate import SafetyGate

        return SafetyGate(
            settings=self.settings, catalog=self.catalog, db=self.db, engine=lambda: self.engine
        )

    @built_once
    def publisher(self) -> Publisher:
        """The job pipeline's last step: model card, results file, sealed artefacts, the model row."""
        from afinar.services.publication import Publisher

        return Publisher(
            db=self.db,
            settings=self.settings,
            catalog=self.catalog,
            files=self.files,
            artefacts=self.artefacts,
            sealed=self.sealed,
            usage=self.usage,
        )

    @built_once
    def usage(self) -> UsageBilling:
        """Metering, prices and rating: what training and chat cost (services/usage.py)."""
        from afinar.billing.pricebook import PriceBook
        from afinar.services.usage import UsageBilling

        return UsageBilling(
            db=self.db,
            settings=self.settings,
            catalog=self.catalog,
            pricebook=PriceBook.load(self.settings.pricebook_file),
        )

    @built_once
    def spend_limits(self) -> SpendLimits:
        from afinar.services.spend_limits import SpendLimits

        return SpendLimits(db=self.db, usage=self.usage)

    @built_once
    def usage_reports(self) -> UsageReports:
        from afinar.services.usage_reports import UsageReports

        return UsageReports(settings=self.settings, usage=self.usage, spend_limits=self.spend_limits)

    @built_once
    def projects(self) -> ProjectsService:
        from afinar.services.projects import ProjectsService

        return ProjectsService(db=self.db)

    @built_once
    def api_keys(self) -> ApiKeysService:
        from afinar.services.api_keys import ApiKeysService

        return ApiKeysService(db=self.db, projects=self.projects)

    @built_once
    def checkpoint_permissions(self) -> CheckpointPermissionsService:
        """Checkpoints shared with other projects of their organisation (admin keys)."""
        from afinar.services.checkpoint_permissions import CheckpointPermissionsService

        return CheckpointPermissionsService(db=self.db, projects=self.projects)

    @built_once
    def webhook_deliverer(self) -> WebhookDeliverer:
        """Signs and sends one webhook attempt and logs it (the dispatcher's and the test call's)."""
        from afinar.services.webhook_delivery import WebhookDeliverer, WebhookSender

        return WebhookDeliverer(db=self.db, sender=WebhookSender())

    @built_once
    def webhooks(self) -> WebhooksService:
        """Webhook endpoints of a project and their delivery log."""
        from afinar.services.webhooks import WebhooksService

        return WebhooksService(db=self.db, deliverer=self.webhook_deliverer)

    @built_once
    def service_accounts(self) -> ServiceAccountsService:
        from afinar.services.service_accounts import ServiceAccountsService

        return ServiceAccountsService(db=self.db, projects=self.projects, api_keys=self.api_keys)

    @built_once
    def users(self) -> UsersService:
        from afinar.services.users import UsersService

        return UsersService(db=self.db)

    @built_once
    def workers(self) -> WorkersService:
        """Workers' rows (devices, lanes, heartbeat) and which jobs each can train."""
        from afinar.services.workers import WorkersService

        return WorkersService(db=self.db, catalog=self.catalog, lease_seconds=self.settings.lease_seconds)

    @built_once
    def readiness(self) -> ReadinessService:
        """``GET /ready``: the database and the blob store, probed with a short timeout."""
        from afinar.services.readiness import ReadinessService

        return ReadinessService(db=self.db, blobs=self.blobs)

    @built_once
    def org_settings(self) -> OrgSettingsService:
        from afinar.services.org_settings import OrgSettingsService

        return OrgSettingsService(db=self.db)

    @built_once
    def retention(self) -> RetentionService:
        from afinar.services.retention import RetentionService

        return RetentionService(
            db=self.db, settings=self.settings, files=self.files, org_settings=self.org_settings
        )

    @built_once
    def exporter(self) -> Exporter:
        from afinar.services.export import Exporter

        return Exporter(db=self.db, files=self.files, models=self.models)

    @built_once
    def erasure(self) -> ErasureService:
        from afinar.services.erasure import ErasureService

        return ErasureService(
            db=self.db,
            keys=self.keys,
            blobs=self.blobs,
            jobs_dir=self.settings.jobs_dir,
            loaded_engine=lambda: self._engine,
        )

    @built_once
    def evals(self) -> EvalsService:
        from afinar.services.evals import EvalsService

        return EvalsService(db=self.db, sealed=self.sealed, models=self.models)

    @built_once
    def eval_runs(self) -> EvalRunsService:
        from afinar.services.eval_runs import EvalRunsService

        return EvalRunsService(db=self.db, sealed=self.sealed, models=self.models, evals=self.evals)

    @built_once
    def eval_output_items(self) -> EvalOutputItemsService:
        from afinar.services.eval_items import EvalOutputItemsService

        return EvalOutputItemsService(db=self.db, runs=self.eval_runs)

    @built_once
    def eval_comparisons(self) -> EvalComparisonsService:
        from afinar.services.eval_compare import EvalComparisonsService

        return EvalComparisonsService(db=self.db, evals=self.evals, runs=self.eval_runs)

    @built_once
    def eval_gates(self) -> EvalGatesService:
        from afinar.services.eval_gates import EvalGatesService

        return EvalGatesService(db=self.db, evals=self.evals, runs=self.eval_runs)

    @built_once
    def graders(self) -> GradersService:
        """Fine-tuning graders (``/v1/fine_tuning/alpha/graders``): the Evals API's graders."""
        from afinar.services.graders import GradersService

        return GradersService(models=self.models, chat=self.chat)

    def resolve_servable(self, org_id: str, name: str) -> ServableModel:
        return self.models.resolve_servable(org_id, name)

    @built_once
    def metrics(self) -> ServingMetrics:
        from afinar.services.metrics import ServingMetrics

        return ServingMetrics(loaded_engine=lambda: self._engine)

    @built_once
    def moderation(self) -> ModerationEngine:
        """The operator's moderation engine, built once (its models load on first use).

        Raises ``ValueError`` when the settings name no usable backend."""
        from afinar.safety.moderation import build_moderation_engine

        return build_moderation_engine(self.settings, catalog=self.catalog, engine=lambda: self.engine)

    @built_once
    def chat(self) -> ChatService:
        """Chat completions (the API, the dashboard's playground and eval runs)."""
        from afinar.services.chat import ChatService

        return ChatService(
            engine=lambda: self.engine,
            resolve_servable=self.models.resolve_servable,
            limits=self.spend_limits,
            usage=self.usage,
            metrics=self.metrics,
            moderation=lambda: self.moderation,
            catalog=self.catalog,
            settings=self.settings,
            db=self.db,
        )

    @built_once
    def responses(self) -> ResponsesService:
        """The Responses API, translated onto chat completions; stored responses."""
        from afinar.services.responses import ResponsesService

        return ResponsesService(db=self.db, chat=self.chat)

    @property
    def engine(self) -> InferenceEngine:
        """The inference engine, created on first use so the API tier starts without torch.

        An engine given to the constructor is used as it is; otherwise the backend the settings
        select (``inference/backends.py``), which reads adapters through ``artefacts.open_dir``
        (they are encrypted at rest)."""
        with self._engine_lock:
            if self._engine is None:
                from afinar.inference.backends import build_engine

                self._engine = build_engine(self.settings, opener=self.artefacts.open_dir)
            return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        state = self.__dict__.get("shared_state")
        if state is not None and hasattr(state, "close"):
            state.close()
        self.db.dispose()

"""The composition root: one object built from Settings that holds every component."""

from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any

from afinar.blobs.local import LocalBlobStore
from afinar.blobs.scratch import Scratch
from afinar.catalog.registry import Catalog
from afinar.clock import Clock, system_clock
from afinar.config import Settings
from afinar.store.db import Database

if TYPE_CHECKING:
    from afinar.blobs.sealed import SealedBlobs
    from afinar.crypto.keys import KeyRing
    from afinar.domain.models import ServableModel
    from afinar.services.artefacts import ArtefactsService
    from afinar.services.files import FilesService
    from afinar.services.jobs import JobsService
    from afinar.services.metrics import ServingMetrics
    from afinar.services.models import ModelsService
    from afinar.services.reports import ReportsService
    from afinar.services.usage import UsageService


class Container:
    def __init__(self, settings: Settings, *, engine: Any = None, clock: Clock = system_clock) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(settings.resolved_database_url(), clock)
        self._seal_columns()
        self.blobs = LocalBlobStore(settings.blobs_dir)  # ciphertext only: customer data goes via ``sealed``
        self.scratch = Scratch(settings.scratch_dir)
        self.scratch.sweep()  # plaintext left by a crashed process
        self.catalog = Catalog.load(settings.catalog_file)
        self._engine = engine
        self._engine_lock = threading.Lock()

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

    @cached_property
    def keys(self) -> KeyRing:
        """Per-organisation data keys, wrapped by the master key (docs/architecture.md)."""
        from afinar.crypto.keys import KeyRing, load_master_key
        from afinar.store import org_keys

        return KeyRing(
            load_master_key(self.settings),
            lambda org_id: org_keys.load(self.db, org_id),
            lambda org_id, wrapped: org_keys.insert(self.db, org_id, wrapped),
        )

    @cached_property
    def sealed(self) -> SealedBlobs:
        """The blob store with encryption at rest: every customer byte goes through here."""
        from afinar.blobs.sealed import SealedBlobs

        return SealedBlobs(self.blobs, self.keys, self.scratch)

    @cached_property
    def files(self) -> FilesService:
        from afinar.services.files import FilesService

        return FilesService(self)

    @cached_property
    def jobs(self) -> JobsService:
        from afinar.services.jobs import JobsService

        return JobsService(self)

    @cached_property
    def reports(self) -> ReportsService:
        from afinar.services.reports import ReportsService

        return ReportsService(self)

    @cached_property
    def models(self) -> ModelsService:
        from afinar.services.models import ModelsService

        return ModelsService(self)

    @cached_property
    def artefacts(self) -> ArtefactsService:
        from afinar.services.artefacts import ArtefactsService

        return ArtefactsService(self)

    @cached_property
    def usage(self) -> UsageService:
        from afinar.services.usage import UsageService

        return UsageService(self)

    def resolve_servable(self, org_id: str, name: str) -> ServableModel:
        return self.models.resolve_servable(org_id, name)

    @cached_property
    def metrics(self) -> ServingMetrics:
        from afinar.services.metrics import ServingMetrics

        return ServingMetrics(self)

    @cached_property
    def moderation(self) -> Any:
        """The operator's moderation engine, built once (its models load on first use)."""
        from afinar.safety.moderation import build_moderation_engine

        return build_moderation_engine(self.settings, self)

    @property
    def engine(self) -> Any:
        """The inference engine, created on first use so the API tier starts without torch."""
        with self._engine_lock:
            if self._engine is None:
                from afinar.inference.engine import HFEngine

                self._engine = HFEngine(
                    adapter_cache_size=self.settings.adapter_cache_size,
                    max_queued_requests=self.settings.max_queued_requests,
                    max_batch_size=self.settings.max_batch_size,
                )
            store = getattr(self._engine, "store", None)
            if store is not None and getattr(store, "opener", False) is None:
                store.opener = self.artefacts.open_dir  # adapters are encrypted at rest
            return self._engine

    def close(self) -> None:
        if self._engine is not None and hasattr(self._engine, "close"):
            self._engine.close()
        self.db.dispose()

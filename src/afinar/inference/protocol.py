"""The serving seam: what the rest of Afinar calls on an inference engine.

The built-in :class:`~afinar.inference.engine.HFEngine` implements it; another backend (llama.cpp,
vLLM, a test double) implements these methods and is handed to ``Container(settings, engine=...)``.
Requests and events are the plain dataclasses of ``inference/types.py``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Protocol

from afinar.inference.types import Event, GenerationRequest, GenerationResult


class InferenceEngine(Protocol):
    def stream(self, request: GenerationRequest) -> AsyncGenerator[Event, None]:
        """``Started``, then ``Delta``/``Finished`` events until every choice finished.

        Errors are raised: an ``AfinarError`` before ``Started`` means the request was refused
        (a full queue, a prompt over the context). Closing the generator cancels the request.
        """
        ...

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """The whole completion at once (cancelled with the awaiting task)."""
        ...

    def generate_sync(self, request: GenerationRequest, timeout: float | None = None) -> GenerationResult:
        """``generate`` for threads (the worker's gates, the guard moderation backend)."""
        ...

    def unload(self, adapter_path: Path) -> bool:
        """Forget a deleted model's adapter; True when it was loaded."""
        ...

    def loaded_adapters(self) -> list[Path]:
        """The adapters held in memory (a metrics gauge)."""
        ...

    def queued(self) -> int:
        """Requests waiting to be admitted (a metrics gauge)."""
        ...

    def close(self) -> None:
        """Refuse new requests and fail the waiting ones; called when the container closes."""
        ...

"""Which inference backend serves chat completions, and how it is built.

``AFINAR_INFERENCE_BACKEND`` names one (``Settings.inference_backend``):

- ``builtin``: transformers + peft in this process (:class:`~afinar.inference.engine.HFEngine`);
- ``llamacpp``: llama.cpp's server embedded through the ``xllamacpp`` wheel, on GGUF conversions
  of the base and of each adapter (:mod:`afinar.inference.llamacpp`);
- ``vllm``: an OpenAI-compatible vLLM server with run-time LoRA loading
  (:mod:`afinar.inference.openai_http`);
- ``auto`` (the default): ``vllm`` when a vLLM server URL is configured, or when CUDA and the
  ``vllm`` package are both present; else ``llamacpp`` when ``xllamacpp`` is installed; else
  ``builtin``.

Every backend implements :class:`~afinar.inference.protocol.InferenceEngine`. A backend module
exposes ``build(context: EngineContext) -> InferenceEngine``; :func:`build_engine` is the one
place that picks it, so the container (``services/container.py``) stays backend-agnostic.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from afinar.config import Settings
    from afinar.inference.protocol import InferenceEngine

log = logging.getLogger(__name__)

BACKENDS = ("builtin", "llamacpp", "vllm")

# backend name -> the module whose ``build(context)`` makes its engine
_MODULES = {
    "builtin": "afinar.inference.engine",
    "llamacpp": "afinar.inference.llamacpp",
    "vllm": "afinar.inference.openai_http",
}

Opener = Callable[[Path], AbstractContextManager[Path]]


@dataclass(frozen=True)
class EngineContext:
    """What a backend may need to build its engine."""

    settings: Settings
    # Turns an adapter path whose files are encrypted at rest into a plaintext directory that
    # lives for the duration of the ``with`` block (``services/artefacts.py``); None: plain dirs.
    opener: Opener | None = None


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def resolve_backend(settings: Settings) -> str:
    """The backend ``settings`` select: ``auto`` resolved against what this machine has."""
    choice = settings.inference_backend
    if choice != "auto":
        return choice
    # Afinar is a client of a vLLM server, never vLLM in-process: without its URL there is nothing to use.
    if settings.vllm_url:
        return "vllm"
    if _installed("xllamacpp"):
        return "llamacpp"
    return "builtin"


def build_engine(settings: Settings, *, opener: Opener | None = None) -> InferenceEngine:
    """The inference engine ``settings`` select, built (its models load on first request)."""
    name = resolve_backend(settings)
    module = importlib.import_module(_MODULES[name])
    build: Callable[[EngineContext], InferenceEngine] = module.build
    log.info("inference backend: %s", name)
    return build(EngineContext(settings=settings, opener=opener))

"""Backend selection (``AFINAR_INFERENCE_BACKEND``): what ``auto`` resolves to here, and that the
container builds the engine the settings name (nothing loads until the first request)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from afinar.config import Settings
from afinar.inference.backends import resolve_backend


def test_the_test_suite_pins_the_builtin_engine(settings: Settings) -> None:
    assert settings.inference_backend == "builtin"
    assert resolve_backend(settings) == "builtin"


def test_auto_picks_llamacpp_where_xllamacpp_is_installed(tmp_path: Path) -> None:
    pytest.importorskip("xllamacpp")
    auto = Settings(data_dir=tmp_path, inference_backend="auto")
    assert resolve_backend(auto) == "llamacpp"  # no vLLM server configured
    with_server = Settings(data_dir=tmp_path, inference_backend="auto", vllm_url="http://127.0.0.1:9/v1")
    assert resolve_backend(with_server) == "vllm"  # a configured vLLM server wins


@pytest.mark.parametrize(
    ("backend", "engine_class"),
    [
        ("builtin", "afinar.inference.engine.HFEngine"),
        ("llamacpp", "afinar.inference.llamacpp.LlamaCppEngine"),
    ],
)
def test_container_builds_the_named_backend(settings: Settings, backend: str, engine_class: str) -> None:
    from afinar.services.container import Container

    if backend == "llamacpp":
        pytest.importorskip("xllamacpp")
    c = Container(settings.model_copy(update={"inference_backend": backend}))
    try:
        engine: Any = c.engine
        assert f"{type(engine).__module__}.{type(engine).__name__}" == engine_class
        assert engine.loaded_adapters() == [] and engine.queued() == 0
    finally:
        c.close()

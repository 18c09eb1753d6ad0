"""One built-in moderation engine per test session (the models load once); the root conftest imports it."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def builtin_engine(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from afinar.config import Settings
    from afinar.safety.moderation import build_moderation_engine

    settings = Settings(data_dir=Path(tmp_path_factory.mktemp("moderation")))
    engine = build_moderation_engine(settings)
    engine.warm()
    return engine

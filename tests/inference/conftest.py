"""Fixtures for the engine tests: one engine per module, three adapters on the tiny model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.adapters import make_adapter
from tests.support.tiny_model import CHATML_TEMPLATE

OTHER_TEMPLATE = CHATML_TEMPLATE.replace(
    "You are a helpful assistant.", "You are SkateBot, a shop assistant for skateboards."
)


@pytest.fixture(scope="session")
def adapters(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> list[Path]:
    root = tmp_path_factory.mktemp("adapters")
    out = [make_adapter(tiny_model_dir, root / f"a{i}", seed=i + 1) for i in range(3)]
    out.append(make_adapter(tiny_model_dir, root / "with-tokenizer", seed=9, chat_template=OTHER_TEMPLATE))
    return out


@pytest.fixture(scope="module")
def engine() -> Iterator[object]:
    from afinar.inference.engine import HFEngine

    eng = HFEngine(adapter_cache_size=8, max_queued_requests=32)
    yield eng
    eng.close()

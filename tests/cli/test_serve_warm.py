"""``afinar serve`` warms the llama.cpp backend: the base converted and its first server started in
a background thread (``AFINAR_LLAMACPP_WARM``); on other backends it builds no engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from afinar.cli.main import _warm_engine


def test_warm_starts_the_llamacpp_server_in_the_background(settings: Any, tiny_model_dir: Path) -> None:
    pytest.importorskip("xllamacpp")
    from afinar.services.container import Container

    c = Container(settings.model_copy(update={"inference_backend": "llamacpp", "llamacpp_threads": 1}))
    try:
        thread = _warm_engine(c, tiny_model_dir, 256)
        assert thread is not None
        thread.join(600)
        [base] = c.engine._bases.values()  # type: ignore[attr-defined]
        assert [lane.current is not None for lane in base.lanes] == [True]
    finally:
        c.close()


def test_no_warm_on_the_builtin_backend_or_when_off(settings: Any, tiny_model_dir: Path) -> None:
    from afinar.services.container import Container

    for update in (
        {"inference_backend": "builtin"},
        {"inference_backend": "llamacpp", "llamacpp_warm": False},
    ):
        c = Container(settings.model_copy(update=update))
        try:
            assert _warm_engine(c, tiny_model_dir, 256) is None
            assert c._engine is None  # nothing built
        finally:
            c.close()

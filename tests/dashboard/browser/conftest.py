"""Headless Chromium (Debian's ``chromium``) through Python Playwright, and a real ``afinar serve``.

Playwright's own browser downloads are never used: the browser is the system one, found on PATH.
Without it (or without the ``playwright`` package) the browser tests skip with a loud reason, unless
``AFINAR_REQUIRE_BROWSER=1`` (for CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.support.server import Server

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _missing(reason: str) -> NoReturn:
    if os.environ.get("AFINAR_REQUIRE_BROWSER") == "1":
        pytest.fail(f"AFINAR_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(f"BROWSER TESTS SKIPPED: {reason}")


@pytest.fixture(scope="module")  # sync Playwright holds a running event loop: never let it outlive the module
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        _missing("no `chromium` on PATH; install Debian's package: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the `playwright` Python package is missing: pip install -e '.[dev]'")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where screenshots go: a temporary folder, or AFINAR_SCREENSHOT_DIR when set (to refresh docs/)."""
    target = Path(os.environ.get("AFINAR_SCREENSHOT_DIR") or tmp_path / "screenshots")
    target.mkdir(parents=True, exist_ok=True)
    return target


@pytest.fixture
def dashboard_server(tmp_path: Path, tiny_catalog: Path) -> Iterator[Server]:
    srv = Server(
        tmp_path / "data",
        tiny_catalog,
        AFINAR_DEFAULT_MODEL="tiny-llama",
        AFINAR_TRAIN_STEP_DELAY_SECONDS="0.4",
    ).start()
    yield srv
    srv.stop()

"""Run the worker in the test's own thread."""

from __future__ import annotations

from typing import Any


def run_worker(container: Any) -> None:
    """Run every queued job and eval run to its end, in this thread."""
    from afinar.worker.loop import Worker

    w = Worker(container)
    while w.run_once():
        pass

"""The container builds each service once, even when request threads ask for it at the same time."""

from __future__ import annotations

import threading
import time
from typing import Any

from afinar.services.container import Container, built_once


class _Counting(Container):
    builds = 0

    @built_once
    def slow_service(self) -> object:
        type(self).builds += 1
        time.sleep(0.05)  # long enough for every thread to arrive while the first one builds
        return object()


def test_concurrent_first_uses_get_one_instance(settings: Any) -> None:
    c = _Counting(settings)
    barrier = threading.Barrier(8)
    seen: list[object] = []

    def use() -> None:
        barrier.wait()
        seen.append(c.slow_service)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c.close()
    assert _Counting.builds == 1
    assert len({id(s) for s in seen}) == 1


def test_services_are_shared_and_typed(container: Container) -> None:
    assert container.files is container.files
    assert container.reports.files is container.files  # collaborators are the container's own

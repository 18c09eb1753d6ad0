"""Time buckets and group sums for the usage and costs answers. Pure: facts in, sums out.

Buckets are aligned to UTC multiples of their width (a ``1d`` bucket is one UTC day), start at
the bucket holding ``start_time`` and go up to ``end_time``; facts outside ``[start_time,
end_time)`` are left out. A page holds ``limit`` buckets; ``next_page`` names the next bucket.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from afinar.errors import InvalidRequest

WIDTHS = {"1m": 60, "1h": 3_600, "1d": 86_400}
PAGE_PREFIX = "page_"

F = TypeVar("F")


@dataclass(frozen=True)
class Window:
    start: int
    end: int


@dataclass(frozen=True)
class Grid:
    windows: list[Window]
    has_more: bool
    next_page: str | None


@dataclass
class Group:
    key: tuple[Any, ...]
    sums: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Bucket:
    window: Window
    groups: list[Group]


def grid(start_time: int, end_time: int, width: str, limit: int, page: str | None) -> Grid:
    size = WIDTHS[width]
    if end_time <= start_time:
        raise InvalidRequest("end_time must be after start_time.", param="end_time")
    first = start_time - start_time % size
    begin = first
    if page:
        begin = _page_start(page, first, end_time, size)
    windows: list[Window] = []
    at = begin
    while at < end_time and len(windows) < limit:
        windows.append(Window(at, at + size))
        at += size
    has_more = at < end_time
    return Grid(windows, has_more, f"{PAGE_PREFIX}{at}" if has_more else None)


def _page_start(page: str, first: int, end_time: int, size: int) -> int:
    try:
        at = int(page.removeprefix(PAGE_PREFIX)) if page.startswith(PAGE_PREFIX) else None
    except ValueError:
        at = None
    if at is None or at < first or at >= end_time or (at - first) % size:
        raise InvalidRequest(f"Invalid page cursor: {page!r}.", param="page")
    return at


def aggregate(
    facts: Iterable[F],
    windows: Sequence[Window],
    *,
    start_time: int,
    end_time: int,
    at: Callable[[F], int],
    key: Callable[[F], tuple[Any, ...]],
    values: Callable[[F], dict[str, int]],
) -> list[Bucket]:
    """Sum ``values(fact)`` per bucket and group ``key(fact)``; groups sorted by key, empty buckets kept."""
    if not windows:
        return []
    size = windows[0].end - windows[0].start
    index = {w.start: i for i, w in enumerate(windows)}
    cells: list[dict[tuple[Any, ...], Group]] = [{} for _ in windows]
    for fact in facts:
        t = at(fact)
        if not start_time <= t < end_time:
            continue
        i = index.get(t - t % size)
        if i is None:
            continue
        k = key(fact)
        group = cells[i].get(k)
        if group is None:
            group = cells[i][k] = Group(k)
        for name, v in values(fact).items():
            group.sums[name] = group.sums.get(name, 0) + v
    return [
        Bucket(w, sorted(cells[i].values(), key=lambda g: tuple("" if v is None else str(v) for v in g.key)))
        for i, w in enumerate(windows)
    ]

"""Cursor pages over ``seq``: ``after`` is an object id, the page moves away from it in ``order``."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    has_more: bool


def paginate(
    s: Session,
    stmt: Select[Any],
    model: Any,
    *,
    after: str | None,
    limit: int,
    desc: bool,
    keep: Callable[[Any], bool] | None = None,
) -> Page[Any]:
    """One page of ``stmt``'s rows after ``after``. ``keep``, when given, is a filter SQL cannot say
    portably (e.g. on JSON values): rows are then read in order and kept until the page is full, so
    ``after`` may name any row, kept or not."""
    if after:
        anchor = s.scalar(select(model.seq).where(model.id == after))
        if anchor is not None:
            stmt = stmt.where(model.seq < anchor if desc else model.seq > anchor)
    stmt = stmt.order_by(model.seq.desc() if desc else model.seq.asc())
    if keep is None:
        rows = list(s.scalars(stmt.limit(limit + 1)))
    else:
        kept = (row for row in s.scalars(stmt.execution_options(yield_per=500)) if keep(row))
        rows = list(itertools.islice(kept, limit + 1))
    return Page(items=rows[:limit], has_more=len(rows) > limit)

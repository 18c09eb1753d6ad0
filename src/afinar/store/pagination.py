"""Cursor pages over ``seq``: ``after`` is an object id, the page moves away from it in ``order``."""

from __future__ import annotations

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
    s: Session, stmt: Select[Any], model: Any, *, after: str | None, limit: int, desc: bool
) -> Page[Any]:
    if after:
        anchor = s.scalar(select(model.seq).where(model.id == after))
        if anchor is not None:
            stmt = stmt.where(model.seq < anchor if desc else model.seq > anchor)
    stmt = stmt.order_by(model.seq.desc() if desc else model.seq.asc()).limit(limit + 1)
    rows = list(s.scalars(stmt))
    return Page(items=rows[:limit], has_more=len(rows) > limit)

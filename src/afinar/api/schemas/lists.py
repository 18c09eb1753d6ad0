"""OpenAI's cursor-page envelope: ``object``, ``data``, ``first_id``, ``last_id``, ``has_more``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def listing(items: Sequence[T], has_more: bool, render: Callable[[T], dict[str, Any]]) -> dict[str, Any]:
    data = [render(x) for x in items]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }

"""The page size every administration list accepts (``limit``, 1 to 100)."""

from __future__ import annotations

from afinar.errors import InvalidRequest

MAX_LIMIT = 100


def check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest("limit must be between 1 and 100", param="limit")

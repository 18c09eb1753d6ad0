"""Wire shapes for files (contract §2.1)."""

from __future__ import annotations

from typing import Any

from afinar.store.pagination import Page
from afinar.store.tables import File


def file_object(f: File) -> dict[str, Any]:
    return {
        "id": f.id,
        "object": "file",
        "bytes": f.bytes,
        "created_at": f.created_at,
        "filename": f.filename,
        "purpose": f.purpose,
        "status": f.status,
        "status_details": f.status_details,
        "expires_at": f.expires_at,
    }


def file_list(page: Page[File]) -> dict[str, Any]:
    data = [file_object(f) for f in page.items]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": page.has_more,
    }

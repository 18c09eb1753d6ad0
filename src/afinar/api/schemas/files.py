"""Wire shapes for files (contract §2.1)."""

from __future__ import annotations

from typing import Any

from afinar.api.schemas.lists import listing
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


def deleted_file_object(file_id: str) -> dict[str, Any]:
    return {"id": file_id, "object": "file", "deleted": True}


def file_list(page: Page[File]) -> dict[str, Any]:
    return listing(page.items, page.has_more, file_object)

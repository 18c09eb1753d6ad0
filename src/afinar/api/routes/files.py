"""``/v1/files``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile

from afinar.api.deps import get_container, get_principal
from afinar.api.schemas.files import deleted_file_object, file_list, file_object
from afinar.errors import InvalidRequest
from afinar.services.container import Container
from afinar.services.orgs import Principal

router = APIRouter(tags=["files"])


def _chunks(upload: UploadFile) -> Iterator[bytes]:
    while chunk := upload.file.read(1024 * 1024):
        yield chunk


@router.post("/files")
async def create_file(
    request: Request, p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> dict[str, Any]:
    from starlette.concurrency import run_in_threadpool

    form = await request.form(max_part_size=c.settings.max_upload_bytes + 1)
    upload = form.get("file")
    purpose = form.get("purpose")
    if not isinstance(upload, UploadFile):
        raise InvalidRequest("Missing required parameter: 'file'.", param="file")
    if not isinstance(purpose, str) or not purpose:
        raise InvalidRequest("Missing required parameter: 'purpose'.", param="purpose")
    expires = form.get("expires_after[seconds]")
    seconds = None
    if isinstance(expires, str):
        try:
            seconds = int(expires)
        except ValueError:
            raise InvalidRequest("expires_after.seconds must be an integer", param="expires_after") from None
    row = await run_in_threadpool(
        c.files.create,
        p.org_id,
        upload.filename or "upload",
        purpose,
        _chunks(upload),
        expires_after_seconds=seconds,
        project_id=p.project_id,
    )
    return file_object(row)


@router.get("/files")
def list_files(
    after: str | None = None,
    limit: int = 10000,
    order: str = "desc",
    purpose: str | None = None,
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
) -> dict[str, Any]:
    return file_list(c.files.list(p.org_id, after=after, limit=limit, order=order, purpose=purpose))


@router.get("/files/{file_id}")
def retrieve_file(
    file_id: str, p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> dict[str, Any]:
    return file_object(c.files.get(p.org_id, file_id))


@router.get("/files/{file_id}/content")
def file_content(
    file_id: str, p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> StreamingResponse:
    chunks = c.files.download(p.org_id, file_id, project_id=p.project_id)
    return StreamingResponse(chunks, media_type="application/octet-stream")


@router.delete("/files/{file_id}")
def delete_file(
    file_id: str, p: Principal = Depends(get_principal), c: Container = Depends(get_container)
) -> dict[str, Any]:
    return deleted_file_object(c.files.delete(p.org_id, file_id))

"""``/v1/files``."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile

from afinar.api.deps import get_container, get_principal
from afinar.api.idempotency import Idempotency, fingerprint, idempotency
from afinar.api.schemas.files import deleted_file_object, file_list, file_object
from afinar.errors import InvalidRequest
from afinar.services.container import Container
from afinar.services.orgs import Principal

router = APIRouter(tags=["files"])


def _chunks(upload: UploadFile) -> Iterator[bytes]:
    while chunk := upload.file.read(1024 * 1024):
        yield chunk


class _Hashed:
    """The upload's chunks, hashed (SHA-256) as they stream: the Idempotency-Key fingerprint."""

    def __init__(self, upload: UploadFile) -> None:
        self.upload = upload
        self.sha256 = hashlib.sha256()

    def chunks(self) -> Iterator[bytes]:
        for chunk in _chunks(self.upload):
            self.sha256.update(chunk)
            yield chunk

    def drain(self) -> str:
        """Hash what was not streamed (a replay stores nothing; a refused upload stopped early)."""
        for _ in self.chunks():
            pass
        return self.sha256.hexdigest()


@router.post("/files")
async def create_file(
    request: Request,
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
    idem: Idempotency = Depends(idempotency),
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
    content = _Hashed(upload)

    async def request_fingerprint() -> str:
        sha256 = await run_in_threadpool(content.drain)
        fields = {"purpose": purpose, "filename": upload.filename, "expires_after[seconds]": seconds}
        return fingerprint({**fields, "file_sha256": sha256})

    earlier = await run_in_threadpool(idem.start, None)  # the fingerprint is known once the file has streamed
    if earlier is not None:
        return idem.replay(earlier, await request_fingerprint())  # nothing stored
    try:
        row = await run_in_threadpool(
            c.files.create,
            p.org_id,
            upload.filename or "upload",
            purpose,
            content.chunks(),
            expires_after_seconds=seconds,
            project_id=p.project_id,
        )
    except BaseException as exc:
        if idem.key is not None:
            await run_in_threadpool(idem.fail, exc, await request_fingerprint())
        raise
    body = file_object(row)
    if idem.key is not None:
        await run_in_threadpool(idem.finish, await request_fingerprint(), body)
    return body


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

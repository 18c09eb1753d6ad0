"""The dashboard's own CSS/JS and the vendored libraries, served from the package."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

router = APIRouter(include_in_schema=False)

TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}


@router.get("/static/{path:path}")
def static_file(path: str) -> Response:
    parts = path.split("/")
    suffix = "." + parts[-1].rsplit(".", 1)[-1] if "." in parts[-1] else ""
    if suffix not in TYPES or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise HTTPException(404, path)
    node = resources.files("afinar.dashboard").joinpath("static", *parts)
    if not node.is_file():
        raise HTTPException(404, path)
    headers = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
    return Response(node.read_bytes(), media_type=TYPES[suffix], headers=headers)

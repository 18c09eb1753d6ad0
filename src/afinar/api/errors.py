"""Map ``AfinarError`` (and request validation) once to OpenAI's error envelope and status."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from afinar import errors

STATUS: list[tuple[type[errors.AfinarError], int]] = [
    (errors.AuthenticationFailed, 401),
    (errors.PermissionDenied, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.RateLimited, 429),
    (errors.QuotaExceeded, 429),
    (errors.ServerError, 500),
    (errors.LeaseLost, 500),
    (errors.Unprocessable, 422),
    (errors.InvalidRequest, 400),
    (errors.DataError, 400),
]


def status_for(exc: errors.AfinarError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 400


def envelope(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(exc: errors.AfinarError) -> JSONResponse:
    status = status_for(exc)
    headers = {}
    if isinstance(exc, errors.RateLimited):
        headers["retry-after"] = str(max(1, round(exc.retry_after)))
    if status in (400, 401, 403, 404):
        headers["x-should-retry"] = "false"
    return JSONResponse(envelope(exc.message, exc.type, exc.param, exc.code), status, headers=headers)


def _loc_to_param(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or None


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}


def declare_errors(app: FastAPI) -> None:
    """Make the OpenAPI schema say what the app answers: never FastAPI's 422, and OpenAI's error
    envelope for every error status (``default``), so schema checks hold error bodies to it."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas["ErrorResponse"] = ERROR_SCHEMA
        ref = {"$ref": "#/components/schemas/ErrorResponse"}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                responses.setdefault(
                    "default", {"description": "Error", "content": {"application/json": {"schema": ref}}}
                )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    declare_errors(app)

    @app.exception_handler(errors.AfinarError)
    async def _afinar(_: Request, exc: errors.AfinarError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        param = _loc_to_param(tuple(first.get("loc", ())))
        reason = first.get("msg", "invalid request")
        message = f"Invalid value for '{param}': {reason}" if param else f"Invalid request: {reason}"
        return JSONResponse(envelope(message, "invalid_request_error", param, None), 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return JSONResponse(envelope(f"Unknown request URL: {exc.detail}", "invalid_request_error"), 404)
        if exc.status_code == 405:
            return JSONResponse(envelope("Method not allowed", "invalid_request_error"), 405)
        return JSONResponse(envelope(str(exc.detail), "invalid_request_error"), exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            envelope("The server had an error while processing your request.", "server_error"), 500
        )

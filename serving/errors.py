"""How errors become HTTP responses: always JSON with a code, never a bare 500 for bad input."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

from core.errors import ReelsiftError, ServiceUnavailable
from serving.http import UnexpectedErrorMiddleware


class ErrorBody(BaseModel):
    """Every error the API answers with, whatever its status."""

    code: str = Field(description="stable code, e.g. E101 (see core/errors.py)",
                      examples=["E101"])
    message: str = Field(description="what went wrong and what to do about it")
    details: dict[str, Any] | None = Field(
        default=None, description="machine-readable specifics: the field, the limit, ..."
    )


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# Statuses any route may answer (declared once for the whole API).
COMMON_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("the body is not valid JSON, not UTF-8, or nests too deeply"),
    401: _error("no API key, or an unknown or revoked one"),
    403: _error("the key's role may not do this"),
    404: _error("no such item, task, job or blob"),
    409: _error("conflicts with the current state (an id reused with other content, a "
                "task held by someone else, a transition not allowed)"),
    422: _error("the request breaks a rule; `details.errors` names each field"),
    500: _error("an unexpected server error, logged with the request id in `details`"),
    503: _error("a model service or the database is briefly unavailable; nothing was "
                "lost: retry after `Retry-After` seconds"),
}
# Uploads may also be refused for their size or type.
UPLOAD_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: _error("a text, file or upload is larger than its limit (named in the message)"),
    415: _error("an unsupported content type or media format"),
}

# Codes for errors raised by the HTTP layer itself (no domain error behind them).
HTTP_ERROR_CODES = {400: "E100", 401: "E106", 403: "E107", 404: "E104", 405: "E110",
                    413: "E102", 415: "E103"}
# Seconds a client waits before retrying when the database is briefly unavailable.
DATABASE_RETRY_AFTER_S = 2

log = logging.getLogger(__name__)


def _field(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if p != "body") or "body"


def validation_error_body(errors: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, {
            "code": "E100",
            "message": "request body is not valid JSON (or not UTF-8)",
        }
    problems = [f"{_field(tuple(e.get('loc', ())))}: {e.get('msg')}" for e in errors]
    return 422, {
        "code": "E101",
        "message": "invalid request: " + "; ".join(problems),
        "details": {
            "errors": [
                {
                    "field": _field(tuple(e.get("loc", ()))),
                    "problem": e.get("msg"),
                    "type": e.get("type"),
                }
                for e in errors
            ]
        },
    }


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method the API documents at this request's path (Starlette's own 405 names
    only the first route's, so GET /feed would hide POST /feed). Read from the OpenAPI
    document, which lists every operation however the routes are nested."""
    path = request.scope["path"]
    root = request.scope.get("root_path", "")
    # Mounted under /v1 the documented paths are those below the mount point.
    candidates = {path, path[len(root):]} if root and path.startswith(root) else {path}
    literal: set[str] = set()
    templated: set[str] = set()
    for template, operations in app.openapi().get("paths", {}).items():
        regex, _, _ = compile_path(template)
        if any(regex.match(candidate) for candidate in candidates):
            found = {method.upper() for method in operations}
            (templated if "{" in template else literal).update(found)
    # A documented literal path (/items/batch) is its own resource, even where a template
    # (/items/{item_id}) would also match it.
    methods = literal or templated
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    app.add_middleware(UnexpectedErrorMiddleware)

    @app.exception_handler(ReelsiftError)
    async def reelsift_error(_request: Request, exc: ReelsiftError) -> JSONResponse:
        headers = {}
        if isinstance(exc, ServiceUnavailable):
            headers["Retry-After"] = str(exc.retry_after_s)
        if exc.status >= 500:
            log.error("%s", exc)
        return JSONResponse(exc.to_dict(), status_code=exc.status, headers=headers)

    @app.exception_handler(OperationalError)
    async def database_unavailable(_request: Request, exc: OperationalError) -> JSONResponse:
        # Locked, restarting or unreachable: a passing fault, never the client's input.
        log.warning("database unavailable: %s", exc.orig)
        body = {"code": "E302", "message": "the database is briefly unavailable; nothing "
                "was lost, retry the request", "details": {"retry_after_s": DATABASE_RETRY_AFTER_S}}
        return JSONResponse(body, status_code=503,
                            headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)})

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            allowed = allowed_methods(app, request)
            headers["Allow"] = ", ".join(allowed)
            message = f"method {request.method} is not allowed here; use {', '.join(allowed)}"
        elif exc.status_code == 404 and exc.detail == "Not Found":
            message = f"no such endpoint: {request.url.path}"
        else:
            message = str(exc.detail)
        code = HTTP_ERROR_CODES.get(exc.status_code, f"E{exc.status_code}")
        return JSONResponse({"code": code, "message": message}, status_code=exc.status_code,
                            headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        status, body = validation_error_body(list(exc.errors()))
        return JSONResponse(body, status_code=status)

    @app.exception_handler(UnicodeDecodeError)
    async def not_utf8(_request: Request, exc: UnicodeDecodeError) -> JSONResponse:
        return JSONResponse(
            {"code": "E100", "message": f"request body is not valid UTF-8 (byte {exc.start})"},
            status_code=400,
        )

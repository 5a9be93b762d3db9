"""How errors become HTTP responses: always JSON with a code, never a bare 500 for bad input."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from core.errors import ReelsiftError

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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ReelsiftError)
    async def reelsift_error(_request: Request, exc: ReelsiftError) -> JSONResponse:
        if exc.status >= 500:
            log.error("%s", exc)
        return JSONResponse(exc.to_dict(), status_code=exc.status)

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

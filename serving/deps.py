"""FastAPI dependencies as typed aliases: routes declare what they need in their signature."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
import bentoml
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from core.errors import Unauthorized
from serving.auth import Principal, Role

# Declared so the OpenAPI document names both ways to send a key (and Swagger UI shows its
# Authorize button); the header is read below, with errors that say what is wrong.
bearer_key = HTTPBearer(auto_error=False, scheme_name="bearer",
                        description="an API key: `Authorization: Bearer <key>`")
header_key = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKeyHeader",
                          description="the same API key in an `X-API-Key` header")


async def authenticate(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_key)],
    _header: Annotated[str | None, Depends(header_key)],
) -> Principal:
    """The caller named by ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

    Async so that a recently verified key costs no thread hop and no database read; an
    unknown key is checked against the database in a worker thread.
    """
    service = bentoml.get_current_service()
    components = service.components
    if not components.settings.auth_required:
        return Principal(name="anonymous-admin", role=Role.ADMIN)
    key = request.headers.get("x-api-key")
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value:
            raise Unauthorized("Authorization header must be 'Bearer <api key>'")
        key = value.strip()
    if not key:
        raise Unauthorized(
            "missing API key: send 'Authorization: Bearer <key>' (create one with "
            "`reelsift keys create --role ROLE --name NAME`)"
        )
    cached = components.keys.cached(key)
    if cached is not None:
        return cached
    return await anyio.to_thread.run_sync(components.keys.authenticate, key)


Caller = Annotated[Principal, Depends(authenticate)]

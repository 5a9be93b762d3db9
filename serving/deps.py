"""FastAPI dependencies as typed aliases: routes declare what they need in their signature."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
import bentoml
from fastapi import Depends, Header

from core.errors import Unauthorized
from serving.auth import Principal, Role


async def authenticate(
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Principal:
    """The caller named by ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

    Async so that a recently verified key costs no thread hop and no database read; an
    unknown key is checked against the database in a worker thread.
    """
    service = bentoml.get_current_service()
    components = service.components
    if not components.settings.auth_required:
        return Principal(name="anonymous-admin", role=Role.ADMIN)
    key = x_api_key
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

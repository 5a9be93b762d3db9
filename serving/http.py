"""HTTP plumbing every route shares: bounded JSON bodies and one request id per error.

Bodies are parsed by ``load_json`` wherever they are read (FastAPI's own body parsing
through ``BoundedJsonRoute``, the upload handlers directly), so a body nested thousands
of levels deep is a 400 naming the limit, never a ``RecursionError``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

# No request of this API nests deeper than 4; 32 leaves room and stops parser bombs.
MAX_JSON_DEPTH = 32


class JsonTooDeep(ValueError):
    pass


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests containers deeper than ``limit`` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node  # type: ignore[assignment]
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def load_json(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that refuses nesting deeper than ``max_depth`` (``JsonTooDeep``);
    invalid JSON raises ``json.JSONDecodeError`` as usual."""
    try:
        value = json.loads(raw)
    except RecursionError as exc:
        raise JsonTooDeep(f"the JSON body nests deeper than {max_depth} levels") from exc
    if json_depth_exceeds(value, max_depth):
        raise JsonTooDeep(f"the JSON body nests deeper than {max_depth} levels")
    return value


class BoundedJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = load_json(await self.body())
            except JsonTooDeep as exc:
                # FastAPI passes HTTPException through its body parsing unchanged.
                raise HTTPException(status_code=400, detail=str(exc)) from exc
        return self._json


def _takes_many(schema: dict[str, Any]) -> bool:
    if schema.get("type") == "array":
        return True
    return any(_takes_many(option) for option in schema.get("anyOf", []))


class BoundedJsonRoute(APIRoute):
    """Every route parses its JSON body with ``load_json``, and refuses a query parameter
    that takes one value given several times (FastAPI would silently keep the last)."""

    _single_valued: dict[str, frozenset[str]] | None = None

    def single_valued_query_parameters(self, app: Any, method: str) -> frozenset[str]:
        if self._single_valued is None:
            # The OpenAPI document says which parameters take one value, however the
            # route's dependencies are nested.
            operations = app.openapi().get("paths", {}).get(self.path, {})
            self._single_valued = {
                verb.upper(): frozenset(
                    p["name"] for p in operation.get("parameters", [])
                    if p.get("in") == "query" and not _takes_many(p.get("schema", {}))
                )
                for verb, operation in operations.items()
            }
        return self._single_valued.get(method, frozenset())

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            if request.query_params:
                app = request.scope.get("app")
                for name in self.single_valued_query_parameters(app, request.method):
                    if len(request.query_params.getlist(name)) > 1:
                        raise RequestValidationError([{
                            "type": "too_many_values", "loc": ("query", name),
                            "msg": "takes one value; it was given several times",
                        }])
            return await handler(BoundedJsonRequest(request.scope, request.receive))

        return bounded


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


class UnexpectedErrorMiddleware:
    """The last line: an exception no handler knows becomes the documented JSON ``E500``
    with a request id that is also in the log, and the connection stays usable (an
    exception escaping to the server would make uvicorn drop the keep-alive connection,
    losing the client's next request on it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            request_id = new_request_id()
            log.exception("unexpected error, request id %s: %s %s", request_id,
                          scope.get("method"), scope.get("path"))
            if started:
                raise  # a response is half sent: nothing valid can follow on this connection
            response = JSONResponse(
                {"code": "E500", "message": "unexpected server error; it is logged with "
                 f"request id {request_id}", "details": {"request_id": request_id}},
                status_code=500, headers={"X-Request-ID": request_id},
            )
            await response(scope, receive, send)


HEALTH_PATHS = {"/healthz": "health", "/livez": "liveness", "/readyz": "readiness"}
# Statuses BentoML's own router answers in plain text (paths outside /v1 and /console).
PLAIN_ERROR_CODES = {404: "E104", 405: "E110", 503: "E203"}


class JsonOutsideTheApi:
    """Wraps the whole BentoML service so that what BentoML answers itself is JSON too:
    ``/healthz``, ``/livez`` and ``/readyz`` say what they checked (with the status BentoML
    decided: 200, or 503 while model services are not ready), and BentoML's plain-text
    errors (an unknown path, a method it does not serve) become ``{code, message}``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        check = HEALTH_PATHS.get(scope.get("path", ""))
        start: Message | None = None
        body = bytearray()
        rewrite = check is not None

        async def capture(message: Message) -> None:
            nonlocal start, rewrite
            if message["type"] == "http.response.start":
                start = message
                # Only BentoML's own error answers are read (not every response's headers).
                if not rewrite and message["status"] in PLAIN_ERROR_CODES:
                    headers = dict(message.get("headers", []))
                    content_type = headers.get(b"content-type", b"").lower()
                    rewrite = content_type.startswith(b"text/plain")
                if not rewrite:
                    await send(message)
            elif message["type"] == "http.response.body" and rewrite:
                body.extend(message.get("body", b""))
            else:
                await send(message)

        await self.app(scope, receive, capture)
        if not rewrite or start is None:
            return
        status = start["status"]
        detail = body.decode("utf-8", "replace").strip()
        document: dict[str, Any]
        if check is not None:
            document = {"check": check, "status": "ok" if status < 400 else "unavailable"}
            if detail:
                document["detail"] = detail
        else:
            document = {"code": PLAIN_ERROR_CODES[status],
                        "message": f"{detail or 'error'}: {scope.get('method')} {scope['path']}"}
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in start.get("headers", [])
                   if k.lower() not in (b"content-type", b"content-length")}
        await JSONResponse(document, status_code=status, headers=headers)(scope, receive, send)

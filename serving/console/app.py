"""The moderator console: one server-rendered page plus plain JavaScript, served at /console.

The page carries no moderation data itself. The browser calls the public ``/v1`` API
with the moderator's own key (kept in ``sessionStorage``), so the console can never do
more than that key may, and every decision goes through the same checks and audit log
as an API client's. The server side only renders the shell (views, help, settings) and
serves the static files, with a strict Content-Security-Policy: scripts and styles from
this origin only, media as ``blob:`` URLs made from authenticated fetches, no framing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

from ingest.models import ID_PATTERN
from serving.auth import ROLE_PERMISSIONS, Permission

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
TEMPLATES_DIR = HERE / "templates"
_ITEM_ID = re.compile(ID_PATTERN)


@dataclass(frozen=True)
class Shortcut:
    keys: str
    does: str


# One list feeds the help overlay; console.js binds the same keys.
SHORTCUTS: tuple[Shortcut, ...] = (
    Shortcut("n", "Claim the next task (or go back to the one you hold)"),
    Shortcut("s", "Skip this task: it comes back to you only after every other task"),
    Shortcut("a", "Approve the item"),
    Shortcut("r", "Reject: type to filter the policy codes, pick with 1–9 and 0 (or arrows "
                  "and Space); Enter submits"),
    Shortcut("e", "Escalate to a senior moderator with a note; Enter submits"),
    Shortcut("u", "Unblur or blur again this item's images and video"),
    Shortcut("h", "Open the audit history of this item"),
    Shortcut("Tab, Enter", "On the queue: move to a waiting task and open it"),
    Shortcut("?", "Show or hide this help"),
    Shortcut("Esc", "Close a panel, this help or the settings"),
)

# CSS blur radii in pixels; "medium" is the default a moderator starts with.
BLUR_LEVELS: dict[str, int] = {"soft": 6, "medium": 16, "strong": 32}
DEFAULT_BLUR = "medium"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        # The sign-in form is handled by script; without it the key must go nowhere.
        "form-action 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if "cache-control" not in response.headers:
            # Pages show live queue state: never serve one from a cache.
            response.headers["Cache-Control"] = "no-store"
        return response


def _assets_version() -> str:
    # Busts browser caches when a deployment changes the script or stylesheet.
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.iterdir()):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _roles_with(permission: Permission) -> list[str]:
    return sorted(role.value for role, allowed in ROLE_PERMISSIONS.items() if permission in allowed)


def create_console_app(api_base: str = "/v1") -> FastAPI:
    """The console as an ASGI app; mount it anywhere (the service mounts it at /console).

    ``api_base`` is the path (same origin) where the browser finds the JSON API.
    """
    app = FastAPI(
        title="reelsift moderator console", docs_url=None, redoc_url=None, openapi_url=None
    )
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    version = _assets_version()

    def render(request: Request, view: str, item_id: str | None = None) -> HTMLResponse:
        context: dict[str, Any] = {
            # Where this app is mounted, so links work under any prefix.
            "base": request.scope.get("root_path", "").rstrip("/"),
            "api_base": api_base.rstrip("/"),
            "view": view,
            "item_id": item_id or "",
            "version": version,
            "shortcuts": SHORTCUTS,
            "blur_levels": BLUR_LEVELS,
            "default_blur": DEFAULT_BLUR,
            "tier2_roles": _roles_with(Permission.REVIEW_TIER2),
        }
        return templates.TemplateResponse(request, "console.html", context)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def console_page(request: Request) -> HTMLResponse:
        return render(request, "overview")

    @app.get("/history/{item_id}", response_class=HTMLResponse, include_in_schema=False)
    def history_page(request: Request, item_id: str) -> HTMLResponse:
        # An id the API could never hold gets the overview rather than a dead page.
        if len(item_id) > 128 or not _ITEM_ID.fullmatch(item_id):
            return render(request, "overview")
        return render(request, "history", item_id)

    return app


console_app = create_console_app()

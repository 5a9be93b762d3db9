"""The console's server side without a browser: the page, its assets and its headers."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving.console import SHORTCUTS, console_app, create_console_app


def test_page_renders_views_help_and_config() -> None:
    with TestClient(console_app) as client:
        page = client.get("/")
    assert page.status_code == 200
    html = page.text
    for view in ("view-signin", "view-overview", "view-task", "view-history"):
        assert f'id="{view}"' in html
    for shortcut in SHORTCUTS:
        assert f"<kbd>{shortcut.keys}</kbd>" in html
    assert 'data-api-base="/v1"' in html
    # Blur levels travel as JSON in an attribute: the quotes must be escaped.
    assert re.search(r'data-blur-levels="\{(&#34;[a-z]+&#34;: \d+(, )?)+\}"', html)
    assert 'data-tier2-roles="admin senior_moderator"' in html


def test_every_response_carries_a_strict_policy() -> None:
    with TestClient(console_app) as client:
        page = client.get("/")
        script = client.get("/static/console.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    for response in (page, script):
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
        assert "form-action 'none'" in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"


def test_links_follow_the_mount_point_and_the_api_base() -> None:
    parent = FastAPI()
    parent.mount("/console", create_console_app(api_base="/api/v2/"))
    with TestClient(parent) as client:
        html = client.get("/console/").text
        asset = re.search(r'src="(/console/static/console\.js\?v=[0-9a-f]{12})"', html)
        assert asset is not None, html[:500]
        assert client.get(asset.group(1)).status_code == 200
    assert 'data-base="/console"' in html and 'data-api-base="/api/v2"' in html


def test_history_page_names_the_item_and_refuses_impossible_ids() -> None:
    with TestClient(console_app) as client:
        history = client.get("/history/demo-021").text
        odd = client.get("/history/%3Cscript%3E").text
    assert 'data-view="history"' in history and 'data-item-id="demo-021"' in history
    assert 'data-view="overview"' in odd and "<script>" not in odd.split("<body", 1)[1]

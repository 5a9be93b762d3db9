"""The README's API examples, run as written against a real server.

The bash block under "Using the API" runs in a scratch directory whose ``var`` is the
server's data dir (the README reads ``var/demo-keys.json``), with ``localhost:3000``
pointing at the test server. ``curl`` fails on any HTTP error status, so an example that
answers 4xx/5xx fails the test; ``uv run`` is this test's own virtual environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, LiveServer, live_server_at

pytestmark = pytest.mark.slow


def readme_api_block() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Using the API"):]
    start = section.index("```bash\n") + len("```bash\n")
    return section[start : section.index("```", start)]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    with live_server_at(tmp_path_factory.mktemp("readme") / "var") as live:
        yield live


def test_the_readme_api_examples_run_as_written(server, tmp_path):
    (tmp_path / "var").symlink_to(server.data_dir)
    (tmp_path / "scripts").symlink_to(REPO / "scripts")
    host_port = server.url.removeprefix("http://")
    script = readme_api_block().replace("localhost:3000", host_port)
    prelude = (
        "set -euo pipefail\n"
        # Any HTTP error status fails the command, and so the script.
        'curl() { command curl --fail-with-body --show-error "$@"; echo; }\n'
        # `uv run X` in the project's environment is X with its interpreter first on PATH.
        'uv() { [ "$1" = run ] || return 1; shift; "$@"; }\n'
    )
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    run = subprocess.run(["bash", "-c", prelude + script], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"{run.stdout[-4000:]}\n{run.stderr[-4000:]}"

    # What the examples did is visible through the API afterwards.
    with server.client("demo-admin") as http:
        photo = http.get("/v1/items/photo-1").json()
        clip = http.get("/v1/items/clip-1").json()
        stats = http.get("/v1/review/stats").json()
    assert photo["analysis"]["media"][0]["kind"] == "image"
    assert (tmp_path / "photo.jpg").read_bytes()[:2] == b"\xff\xd8"  # the JPEG came back
    assert clip["state"] != "failed"
    assert stats["decisions_last_hour"] >= 1, stats


def test_health_endpoints_answer_json(server):
    for path, check in (("/healthz", "health"), ("/livez", "liveness"),
                        ("/readyz", "readiness")):
        response = httpx.get(server.url + path)
        assert response.status_code == 200
        assert response.json()["check"] == check and response.json()["status"] == "ok"

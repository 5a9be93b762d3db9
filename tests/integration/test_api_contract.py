"""The API contract against a real server: a valid OpenAPI document that clients can be
generated from, schemathesis finding no server error, schema violation or undeclared
status, bounded inputs, JSON errors everywhere, and a model-service fault answered 503.

The server is this module's own (schemathesis decides review tasks and posts items, which
other modules' tests must not see).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate

from tests.conftest import LiveServer, live_server_at

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    # A model call that hangs becomes a passing fault after 15 s (the fault test below).
    with live_server_at(tmp_path_factory.mktemp("contract") / "var",
                        extra_env={"REELSIFT_MODEL_CALL_TIMEOUT_S": "15"}) as live:
        yield live


def test_the_openapi_document_is_valid_and_declares_security_and_errors(server):
    spec = httpx.get(f"{server.url}/v1/openapi.json").json()
    validate(spec)  # raises on any violation of the OpenAPI 3.1 schema
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"]["type"] == "http" and schemes["bearer"]["scheme"] == "bearer"
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            declared = set(operation["responses"])
            assert {"401", "422", "500", "503"} <= declared, (method, path)
            assert operation.get("security"), (method, path)
            error = operation["responses"]["503"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorBody"}
    item = spec["components"]["schemas"]["ItemOut"]["properties"]
    assert item["created_at"]["format"] == "date-time"
    analysis = spec["components"]["schemas"]["ItemAnalysisOut"]["properties"]
    assert {"labels", "risk", "media", "text"} <= set(analysis)


def test_datetimes_carry_their_offset(server):
    with server.client("demo-uploader") as http:
        item = http.get("/v1/items/demo-001").json()
    assert item["created_at"].endswith(("Z", "+00:00")), item["created_at"]
    assert item["analysis"]["text"]["language"]["code"] == "en"


def test_swagger_ui_is_served_by_the_service_itself(server):
    html = httpx.get(f"{server.url}/v1/docs").text
    assert "cdn" not in html.lower() and "/v1/docs/assets/swagger-ui-bundle.js" in html
    js = httpx.get(f"{server.url}/v1/docs/assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/v1/items", "[" * 5000 + "]" * 5000, 400, "E100"),
        ("POST", "/v1/items/batch", '{"items":' + "[" * 5000 + "]" * 5000 + "}", 400, "E100"),
        ("GET", "/v1/review/tasks/99999999999999999999999", None, 422, "E101"),
        ("GET", "/v1/review/tasks?offset=19997991951296081428480", None, 422, "E101"),
        ("GET", "/v1/media/not-a-hash", None, 422, "E101"),
        ("GET", "/v1/no-such-endpoint", None, 404, "E104"),
    ],
)
def test_bad_input_is_a_json_4xx_and_the_connection_stays_usable(
    server, method, path, body, status, code
):
    with server.client("demo-admin") as http:
        response = http.request(method, path, content=body,
                                headers={"content-type": "application/json"})
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["code"] == code
        assert response.headers.get("connection") != "close"
        assert http.get("/v1/me").status_code == 200  # the same client carries on


def test_405_names_every_method_of_the_path(server):
    with server.client("demo-admin") as http:
        response = http.request("OPTIONS", "/v1/feed")
    assert response.status_code == 405 and response.json()["code"] == "E110"
    assert {"GET", "POST"} <= {m.strip() for m in response.headers["allow"].split(",")}


def test_schemathesis_finds_no_server_error_schema_violation_or_undeclared_status(
    server, tmp_path
):
    st = Path(sys.executable).parent / "st"
    command = [
        str(st), "--config-file", str(Path(__file__).parent / "schemathesis.toml"), "run",
        f"{server.url}/v1/openapi.json", "--url", f"{server.url}/v1",
        "-H", f"Authorization: Bearer {server.keys['demo-admin']}",
        "--checks", "all", "--max-examples", "15", "--seed", "20261130", "--no-shrink",
        "--workers", "1", "--phases", "examples,coverage,fuzzing",
        "--request-timeout", "60",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=420, cwd=tmp_path,
                         env={**os.environ, "NO_COLOR": "1"})
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "failures" not in run.stdout.splitlines()[-1], run.stdout[-3000:]


def _model_service_pid(server: LiveServer, service: str) -> int:
    """The worker process of ``service`` under this server's BentoML arbiter."""
    port = server.url.rsplit(":", 1)[1]
    processes = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            processes[int(entry.name)] = (ppid, cmdline)
    arbiter = next(pid for pid, (_, cmd) in processes.items()
                   if "bentoml serve" in cmd and f"--port {port}" in cmd)
    return next(pid for pid, (ppid, cmd) in processes.items()
                if ppid == arbiter and f"--service-name {service} " in cmd)


def test_a_hung_text_analysis_service_is_a_503_and_the_retry_finishes_the_item(server):
    item = {"id": "fault-1", "creator_id": "c1", "title": "Harbour news",
            "text": "The ferry to the island runs again from Monday after repairs."}
    worker = _model_service_pid(server, "reelsift-text-analysis")
    os.kill(worker, signal.SIGSTOP)  # the service accepts connections and never answers
    try:
        with server.client("demo-uploader") as http:
            refused = http.post("/v1/items", json=item)
            assert refused.status_code == 503, refused.text
            assert refused.json()["code"] == "E203"
            assert int(refused.headers["retry-after"]) >= 1
            stored = http.get("/v1/items/fault-1").json()
            assert stored["state"] == "received", stored  # retryable, not failed
    finally:
        os.kill(worker, signal.SIGCONT)
    with server.client("demo-uploader") as http:
        deadline = time.monotonic() + 120  # the client retries after Retry-After
        while True:
            retried = http.post("/v1/items", json=item)
            if retried.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(float(retried.headers["retry-after"]))
    assert retried.status_code == 200, retried.text  # stored once, analyzed now
    finished = retried.json()
    assert finished["state"] in {"approved", "pending_review", "rejected"}
    assert finished["embeddings"] and finished["analysis"]["text"]["embedding_model"]

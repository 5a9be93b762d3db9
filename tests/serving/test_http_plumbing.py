"""Model-service retries and bounded JSON: the pieces that keep faults out of 500s."""

from __future__ import annotations

import json
from typing import Annotated

import aiohttp
import pytest
from fastapi import Query

from core.errors import ServiceUnavailable
from serving.http import JsonTooDeep, load_json
from serving.model_clients import call_model_service


class Flaky:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "vectors"


def test_connection_faults_are_retried_until_the_call_succeeds():
    call = Flaky([aiohttp.ServerDisconnectedError(), aiohttp.ClientConnectionError("reset")])
    slept: list[float] = []
    assert call_model_service(call, "text-embedding", sleep=slept.append) == "vectors"
    assert call.calls == 3 and len(slept) == 2


def test_a_service_that_stays_away_is_a_503_not_a_crash():
    call = Flaky([aiohttp.ServerDisconnectedError() for _ in range(10)])
    with pytest.raises(ServiceUnavailable) as caught:
        call_model_service(call, "text-embedding", delays_s=(0.0, 0.0), sleep=lambda _: None)
    assert call.calls == 3 and caught.value.status == 503 and caught.value.retry_after_s >= 1


def test_an_error_about_the_input_is_not_retried():
    call = Flaky([ValueError("bad input")])
    with pytest.raises(ValueError):
        call_model_service(call, "text-embedding", sleep=lambda _: None)
    assert call.calls == 1


@pytest.mark.parametrize("depth", [33, 5000, 100_000])
def test_deep_json_is_refused_with_the_limit_named(depth):
    with pytest.raises(JsonTooDeep, match="deeper than 32"):
        load_json("[" * depth + "]" * depth)


def test_ordinary_json_passes_unchanged():
    body = {"items": [{"id": "a", "tags": ["x"], "meta": {"k": [1, 2, {"z": None}]}}]}
    assert load_json(json.dumps(body)) == body
    assert load_json("[" * 32 + "]" * 32) is not None


def test_an_unexpected_exception_is_the_documented_json_with_a_request_id():
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from serving.errors import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    @app.get("/fine")
    def fine() -> dict[str, str]:
        return {"ok": "yes"}

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
        assert response.status_code == 500
        body = response.json()
        assert body["code"] == "E500" and body["details"]["request_id"] in body["message"]
        assert response.headers["x-request-id"] == body["details"]["request_id"]
        assert client.get("/fine").json() == {"ok": "yes"}
        missing = client.get("/nowhere")
        assert missing.status_code == 404 and missing.json()["code"] == "E104"
        wrong = client.post("/fine")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, HEAD"


def test_no_retry_starts_once_the_budget_is_spent():
    clock = iter([0.0, 30.0])  # the first attempt took 30 s (a timeout)
    call = Flaky([TimeoutError() for _ in range(5)])
    with pytest.raises(ServiceUnavailable):
        call_model_service(call, "text-embedding", budget_s=20, sleep=lambda _: None,
                           clock=lambda: next(clock))
    assert call.calls == 1


def test_allow_names_the_literal_resource_before_a_matching_template():
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from serving.errors import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/items/{item_id}")
    def get_item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    @app.post("/items/batch")
    def batch() -> dict[str, str]:
        return {}

    with TestClient(app) as client:
        assert client.request("OPTIONS", "/items/batch").headers["allow"] == "POST"
        assert client.request("OPTIONS", "/items/x1").headers["allow"] == "GET, HEAD"


def test_a_single_valued_query_parameter_given_twice_is_refused():
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from serving.errors import install_error_handlers
    from serving.http import BoundedJsonRoute

    app = FastAPI()
    app.router.route_class = BoundedJsonRoute
    install_error_handlers(app)

    @app.get("/feed")
    def feed(device: str | None = None,
             exclude: Annotated[list[str] | None, Query()] = None) -> dict[str, object]:
        return {"device": device, "exclude": exclude}

    with TestClient(app) as client:
        assert client.get("/feed?device=a&exclude=x&exclude=y").json() == {
            "device": "a", "exclude": ["x", "y"]}
        twice = client.get("/feed?device=a&device=b")
        assert twice.status_code == 422 and "query.device" in twice.json()["message"]


def test_what_bentoml_answers_itself_becomes_json_and_the_rest_passes_through():
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from serving.http import JsonOutsideTheApi

    inner = Starlette(routes=[
        Route("/healthz", lambda _: Response(status_code=200)),
        Route("/readyz", lambda _: PlainTextResponse("runners not ready", status_code=503)),
        Route("/text", lambda _: PlainTextResponse("plain body")),
    ])
    with TestClient(JsonOutsideTheApi(inner)) as client:
        assert client.get("/healthz").json() == {"check": "health", "status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
        missing = client.get("/nowhere")
        assert missing.status_code == 404 and missing.json()["code"] == "E104"
        assert client.get("/text").text == "plain body"  # not an error: untouched

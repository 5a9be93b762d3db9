"""The real server over HTTP: text items in, analyses out, bad input refused cleanly."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_demo_items_were_loaded_and_routed(live_server):
    with live_server.client("demo-moderator") as http:
        tasks = http.get("/v1/review/tasks").json()
    assert tasks, "the demo's risky items should wait in the review queue"
    with live_server.client("demo-uploader") as http:
        spam = http.get("/v1/items/demo-021").json()
    assert spam["state"] == "rejected"
    assert any(r["category"] == "spam" and r["score"] > 0.9 for r in spam["analysis"]["risk"])


def test_post_text_item_returns_analysis_and_stores_embedding(live_server):
    item = {
        "id": "it-1", "creator_id": "c1", "title": "Derby day",
        "text": "Arsenal beat Chelsea 2-1 in London on Saturday; tickets cost $90. #PremierLeague",
        "tags": ["football"],
    }
    with live_server.client("demo-uploader") as http:
        created = http.post("/v1/items", json=item)
        assert created.status_code == 201, created.text
        body = created.json()
        again = http.post("/v1/items", json=item)
        fetched = http.get("/v1/items/it-1", params={"include_vectors": "true"}).json()
    assert again.status_code == 200 and again.json()["id"] == "it-1"
    analysis = body["analysis"]
    labels = {e["label"] for e in analysis["text"]["entities"]}
    assert {"ORG", "GPE", "MONEY", "HASHTAG"} <= labels
    assert analysis["text"]["language"]["code"] == "en"
    assert analysis["text"]["keywords"]
    assert any("Sports" in lb["path"] for lb in analysis["labels"])
    text_vec = next(e for e in fetched["embeddings"] if e["kind"] == "text")
    assert text_vec["dim"] == 384 and len(text_vec["vector"]) == 384
    assert body["state"] in {"approved", "pending_review", "rejected"}


@pytest.mark.parametrize(
    ("payload", "status", "needle"),
    [
        ({"id": "b1", "creator_id": "c", "text": "   "}, 422, "empty"),
        ({"id": "b2", "creator_id": "c", "text": "x" * 20_001}, 413, "20000"),
        ({"id": "b3", "creator_id": "c"}, 422, "text"),
        ({"id": "b4", "creator_id": "c", "text": 5}, 422, "text"),
        ({"id": "b5", "creator_id": "c", "text": "hi", "tags": "notalist"}, 422, "tags"),
        ({"id": "../etc", "creator_id": "c", "text": "hi"}, 422, "id"),
        ({"id": "b6", "creator_id": "c", "text": "nul\u0000byte"}, 422, "NUL"),
    ],
)
def test_bad_items_get_clear_4xx(live_server, payload, status, needle):
    with live_server.client("demo-uploader") as http:
        response = http.post("/v1/items", json=payload)
        assert response.status_code == status, response.text
        assert needle in response.text
        assert http.get(f"/v1/items/{payload['id']}").status_code in (404, 405, 422)


def test_invalid_utf8_and_bad_json_are_400(live_server):
    headers = {"content-type": "application/json"}
    with live_server.client("demo-uploader") as http:
        not_utf8 = http.post("/v1/items", content=b'{"id":"u1","creator_id":"c","text":"\xff\xfe"}',
                             headers=headers)
        not_json = http.post("/v1/items", content=b"{not json", headers=headers)
        assert http.get("/v1/items/u1").status_code == 404
    assert not_utf8.status_code == 400, not_utf8.text
    assert not_json.status_code == 400, not_json.text


def test_repeated_id_with_other_content_is_a_conflict(live_server):
    with live_server.client("demo-uploader") as http:
        first = http.post("/v1/items", json={"id": "dup-1", "creator_id": "c", "text": "one"})
        second = http.post("/v1/items", json={"id": "dup-1", "creator_id": "c", "text": "two"})
        stored = http.get("/v1/items/dup-1").json()
    assert first.status_code == 201 and second.status_code == 409
    assert stored["text"] == "one"


def test_unknown_item_is_404_and_server_keeps_serving(live_server):
    with live_server.client("demo-uploader") as http:
        missing = http.get("/v1/items/nope")
        assert missing.status_code == 404 and missing.json()["code"] == "E104"
        assert http.get("/readyz").status_code == 200


def test_batch_reports_each_item(live_server):
    items = [
        {"id": "batch-1", "creator_id": "c", "text": "Recipe: roast vegetables with thyme"},
        {"id": "batch-2", "creator_id": "c", "text": ""},
        {"id": "batch-3", "creator_id": "c"},
    ]
    with live_server.client("demo-uploader") as http:
        results = http.post("/v1/items/batch", json={"items": items}).json()["results"]
    assert [r["status"] for r in results] == [201, 422, 422]
    assert results[0]["item"]["analysis"]["text"]["embedding_dim"] == 384


def test_health_readiness_and_metrics(live_server):
    with live_server.client(None) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200
        metrics = http.get("/metrics")
    assert metrics.status_code == 200 and "bentoml" in metrics.text


def test_missing_or_wrong_key_is_401_and_wrong_role_403(live_server):
    with live_server.client(None) as http:
        assert http.get("/v1/items/demo-001").status_code == 401
        bad = http.get("/v1/items/demo-001", headers={"Authorization": "Bearer rs_nope_nope"})
        assert bad.status_code == 401
    with live_server.client("demo-feed") as http:
        denied = http.post("/v1/items", json={"id": "r1", "creator_id": "c", "text": "hi"})
    assert denied.status_code == 403

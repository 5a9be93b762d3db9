"""The review API over HTTP: queue filters, claim/decide, history, roles."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_queue_filters_accept_query_strings(live_server):
    with live_server.client("demo-moderator") as http:
        for params in ({"tier": "1"}, {"tier": "2"}, {"status": "open", "limit": "5"},
                       {"category": "spam"}, {"reason": "auto_risk"}):
            response = http.get("/v1/review/tasks", params=params)
            assert response.status_code == 200, (params, response.text)
        assert http.get("/v1/review/tasks", params={"tier": "3"}).status_code == 422


def test_claim_decide_and_history_follow_the_item(live_server):
    with live_server.client("demo-uploader") as up:
        created = up.post("/v1/items", json={
            "id": "rev-1", "creator_id": "spammer",
            "text": "WINNER!! Claim your free 500 pound prize now, text WIN to 80088",
        }).json()
    assert created["state"] in {"pending_review", "rejected"}
    with live_server.client("demo-moderator-2") as mod:
        tasks = mod.get("/v1/review/tasks", params={"item_id": "rev-1"}).json()
        if created["state"] == "rejected":
            assert tasks == []
            return
        for _ in range(100):  # work the queue in priority order until rev-1 comes up
            claimed = mod.post("/v1/review/claim")
            assert claimed.status_code == 200, claimed.text
            task = claimed.json()
            if task["item_id"] == "rev-1":
                break
            mod.post(f"/v1/review/tasks/{task['id']}/decision", json={"action": "approve"})
        else:
            pytest.fail("the task for rev-1 was never handed out")
        assert mod.post(f"/v1/review/tasks/{task['id']}/heartbeat").status_code == 200
        no_code = mod.post(f"/v1/review/tasks/{task['id']}/decision", json={"action": "reject"})
        assert no_code.status_code == 422
        decided = mod.post(f"/v1/review/tasks/{task['id']}/decision",
                           json={"action": "reject", "policy_codes": ["spam.scam"]})
        assert decided.status_code == 200, decided.text
        twice = mod.post(f"/v1/review/tasks/{task['id']}/decision", json={"action": "approve"})
        history = mod.get("/v1/review/items/rev-1/history").json()
        stats = mod.get("/v1/review/stats").json()
    assert twice.status_code == 409
    assert decided.json()["item_state_after"] == "rejected"
    assert any(entry["action"].startswith("decision") for entry in history)
    assert stats["decisions_last_hour"] >= 1


@pytest.mark.parametrize(
    ("key", "method", "path", "allowed"),
    [
        ("demo-uploader", "GET", "/v1/review/tasks", False),
        ("demo-feed", "GET", "/v1/review/stats", False),
        ("demo-moderator", "GET", "/v1/review/stats", True),
        ("demo-moderator", "GET", "/v1/review/calibration", False),
        ("demo-admin", "GET", "/v1/review/calibration", True),
        ("demo-uploader", "GET", "/v1/feed?user_id=u", False),
        ("demo-feed", "GET", "/v1/feed?user_id=u", True),
        ("demo-senior", "GET", "/v1/review/tasks?tier=2", True),
    ],
)
def test_role_matrix_over_http(live_server, key, method, path, allowed):
    with live_server.client(key) as http:
        status = http.request(method, path).status_code
    assert (status == 200) is allowed, status
    if not allowed:
        assert status == 403

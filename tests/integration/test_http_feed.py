"""Upload → approval → feed → events → takedown, over HTTP against the real server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.waiting import wait_until

pytestmark = pytest.mark.slow


def _feed(http, user_id: str, k: int = 50) -> list[dict]:
    response = http.get("/v1/feed", params={"user_id": user_id, "k": k})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ranker"]["name"], "the response says which ranker ranked it"
    for item in body["items"]:
        assert item["channels"] and item["reason"]
    return body["items"]


def _feed_ids(http, user_id: str, k: int = 50) -> list[str]:
    return [item["item_id"] for item in _feed(http, user_id, k)]


def _feeds_from_new_connections(live_server, user_id: str, n: int = 8) -> list[list[str]]:
    """Each request on its own connection: the server's workers each get some of them."""
    pages = []
    for _ in range(n):
        with live_server.client("demo-feed") as http:
            pages.append(_feed_ids(http, user_id))
    return pages


def test_approved_upload_reaches_the_feed_and_takedown_removes_it(live_server):
    item = {
        "id": "feed-1", "creator_id": "gardener",
        "title": "Growing tomatoes on a balcony",
        "text": "Pick a sunny spot, a deep pot and water every morning; cherry varieties do best.",
        "tags": ["gardening"],
    }
    with live_server.client("demo-uploader") as up:
        created = up.post("/v1/items", json=item).json()
    assert created["state"] == "approved", created["state_reason"]
    # The worker that stored it shows it at once; the others within the follow interval.
    wait_until(lambda: all("feed-1" in page for page in
                           _feeds_from_new_connections(live_server, "fresh-user-1")),
               "approved item missing from some worker's feed",
               timeout_s=45, interval_s=0.5)
    with live_server.client("demo-feed") as feed:
        for reporter in ("r1", "r2", "r3"):
            outcome = feed.post("/v1/reports", json={
                "item_id": "feed-1", "reporter_id": reporter, "reason": "misleading"})
            assert outcome.status_code == 200, outcome.text
        assert outcome.json()["pulled"] is True
    # Gone from every worker's very next feed, not after a follow tick.
    for page in _feeds_from_new_connections(live_server, "fresh-user-1", n=12):
        assert "feed-1" not in page
    with live_server.client("demo-uploader") as up:
        assert up.get("/v1/items/feed-1").json()["state"] == "pending_review"


def test_events_change_the_next_feed_and_are_idempotent(live_server):
    user = "sporty-user"
    with live_server.client("demo-feed") as feed:
        before = _feed(feed, user, k=10)
        now = datetime.now(UTC).isoformat()
        sports = ["demo-001", "demo-003", "demo-024"]
        events = [
            {"event_id": f"ev-{user}-{i}", "user_id": user, "item_id": item_id, "type": kind,
             "ts": now, "watch_ms": 30_000, "item_duration_ms": 30_000}
            for i, (item_id, kind) in enumerate(
                [(s, "complete") for s in sports] + [(s, "like") for s in sports]
            )
        ]
        first = feed.post("/v1/events", json={"events": events}).json()
        again = feed.post("/v1/events", json={"events": events}).json()
        after = _feed(feed, user, k=10)
        # Whichever worker answers the next request has applied them.
        for page in _feeds_from_new_connections(live_server, user):
            assert not set(sports) & set(page)
        bad = feed.post("/v1/events", json={"events": [{"event_id": "x", "type": "like"}]})
    assert first["stored"] == len(events) and again["duplicates"] == len(events)
    # Cold start knows nothing of the user; after the events, interest matching leads.
    assert not any("tag_category" in i["channels"] for i in before)
    assert any("tag_category" in i["channels"] for i in after[:3])
    assert any("Sports" in i["reason"] for i in after[:3])
    seen = {i["item_id"] for i in after}
    assert not set(sports) & seen, "items the user has already watched are not shown again"
    assert bad.status_code == 422 and "user_id" in bad.text


def test_feed_requires_a_feed_key(live_server):
    with live_server.client("demo-moderator") as http:
        assert http.get("/v1/feed", params={"user_id": "u"}).status_code == 403

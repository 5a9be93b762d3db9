"""Two machines on one machine (issue #15): two API servers with separate data dirs
sharing one PostgreSQL and one Redis, and two event workers (``reelsift worker events``).

- an event posted to one server changes the next feed from the other within 1 s;
- a takedown through one leaves the other's next feed;
- kill -9 of an event worker while events arrive loses and duplicates none of them.

Needs ``REELSIFT_TEST_POSTGRES_URL`` and ``REELSIFT_TEST_REDIS_URL`` (tests/conftest.py);
runs again on a Redis Cluster (``REELSIFT_REDIS_CLUSTER=true``) with
``REELSIFT_TEST_REDIS_CLUSTER_URL``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, func, select

from recommender.settings import ProfileSettings
from recommender.stream.layout import GROUP, StreamLayout
from recommender.stream.profiles import RedisProfiles
from recommender.tables import EventRow
from serving.launcher import launch
from tests.conftest import (
    REPO,
    LiveServer,
    fresh_postgres_database,
    live_server_at,
    required_redis_server,
)
from tests.waiting import wait_until

# Two servers and two workers start in the first test's setup: minutes on a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
PARTITIONS = 8


class Workers:
    """``reelsift worker events`` processes, each in its own session (kill -9 reaches it)."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        data_dir = self.logs / f"worker-{name}"
        data_dir.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"worker-{name}.log").open("wb") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "serving.cli", "worker", "events", "--name", name],
                cwd=REPO, env={**os.environ, **self.env, "REELSIFT_DATA_DIR": str(data_dir)},
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill_9(self, name: str) -> None:
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module", params=["redis", "redis-cluster"])
def cluster(request, tmp_path_factory) -> Iterator[tuple[LiveServer, LiveServer, Workers,
                                                         redis.Redis, StreamLayout, str]]:
    server = required_redis_server(request.param)
    namespace = f"two-servers-{uuid.uuid4().hex[:8]}"
    root = tmp_path_factory.mktemp("two-servers")
    with ExitStack() as stack:
        db_url = stack.enter_context(fresh_postgres_database())
        client = server.connect()
        stack.callback(client.close)
        # registered first, so it runs last: after the servers and workers stopped
        stack.callback(_delete_namespace, client, namespace)
        env = {"REELSIFT_DATABASE_URL": db_url, "REELSIFT_REDIS_URL": server.url,
               "REELSIFT_REDIS_CLUSTER": "true" if server.cluster else "false",
               "REELSIFT_REDIS_NAMESPACE": namespace,
               "REELSIFT_STREAM_PARTITIONS": str(PARTITIONS),
               # one API worker each: two servers of two would need ~10 GB here
               "REELSIFT_API_WORKERS": "1"}
        workers = Workers(env, root)
        stack.callback(workers.stop)
        for name in ("w1", "w2"):
            workers.start(name)
        # Both servers start at once. The second uses the first one's demo keys (they
        # live in the shared database); its own --demo would revoke them.
        with ThreadPoolExecutor(1) as pool:
            second_start = pool.submit(launch, root / "b" / "var", demo=False, extra_env=env)
            try:
                first = stack.enter_context(live_server_at(root / "a" / "var", extra_env=env))
            finally:  # stopped with the rest, whichever start failed
                launched = second_start.result()
                stack.callback(launched.stop)
        second = LiveServer(url=launched.url, data_dir=root / "b" / "var", keys=first.keys,
                            log=launched.log)
        layout = StreamLayout(namespace, PARTITIONS)
        wait_until(lambda: client.zcard(layout.workers) >= 2,  # both workers registered
                   "event workers did not start", timeout_s=120, interval_s=0.5)
        yield first, second, workers, client, layout, db_url


def _delete_namespace(client: redis.Redis, namespace: str) -> None:
    keys = list(client.scan_iter(f"{namespace}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start:start + 500])


def _feed_ids(server: LiveServer, user_id: str, k: int = 10) -> list[str]:
    with server.client("demo-feed") as http:
        response = http.get("/v1/feed", params={"user_id": user_id, "k": k})
    assert response.status_code == 200, response.text
    return [item["item_id"] for item in response.json()["items"]]


def _events(prefix: str, user: str, items: list[str], kind: str = "complete") -> list[dict]:
    now = datetime.now(UTC).isoformat()
    return [{"event_id": f"{prefix}-{n}", "user_id": user, "item_id": item_id, "type": kind,
             "ts": now, "watch_ms": 30_000, "item_duration_ms": 30_000}
            for n, item_id in enumerate(items)]


def test_an_event_posted_to_one_server_changes_the_next_feed_from_the_other(cluster):
    first, second, *_ = cluster
    user = "two-servers-user"
    before = _feed_ids(second, user, k=10)
    watched = before[:3]
    with first.client("demo-feed") as http:
        posted = http.post("/v1/events", json={"events": _events("seen", user, watched)})
        assert posted.status_code == 200, posted.text
        assert posted.json()["stored"] == 3
        sent = time.monotonic()
        again = http.post("/v1/events", json={"events": _events("seen", user, watched)})
        assert again.json()["duplicates"] == 3
    # What the user watched leaves the other server's feed, through the stream, the
    # worker and the profile in Redis.
    while set(watched) & set(_feed_ids(second, user, k=10)):
        assert time.monotonic() - sent < 1.0, "the other server's feed did not change in 1 s"
        time.sleep(0.02)


def test_a_takedown_through_one_server_leaves_the_others_next_feed(cluster):
    first, second, *_ = cluster
    user = "takedown-watcher"
    victim = _feed_ids(second, user, k=10)[0]
    with first.client("demo-feed") as http:
        for reporter in ("r1", "r2", "r3"):
            outcome = http.post("/v1/reports", json={
                "item_id": victim, "reporter_id": reporter, "reason": "misleading"})
            assert outcome.status_code == 200, outcome.text
        assert outcome.json()["pulled"] is True
    for _ in range(5):
        assert victim not in _feed_ids(second, user, k=50)


def test_kill_9_of_an_event_worker_loses_and_duplicates_no_event(cluster):
    first, second, workers, client, layout, db_url = cluster
    users = [f"load-user-{n}" for n in range(40)]
    with first.client("demo-feed") as http:
        catalog = [i["item_id"] for i in http.get(
            "/v1/feed", params={"user_id": "catalog-reader", "k": 50}).json()["items"]]
    posted: list[dict] = []
    clients = {server.url: server.client("demo-feed") for server in (first, second)}
    try:
        for batch in range(30):
            kind = ["view", "like", "skip", "impression"][batch % 4]
            events = [{"event_id": f"load-{batch}-{n}", "user_id": users[n % len(users)],
                       "item_id": catalog[(batch + n) % len(catalog)], "type": kind,
                       "ts": datetime.now(UTC).isoformat(), "watch_ms": 5000,
                       "item_duration_ms": 10_000} for n in range(100)]
            server = (first, second)[batch % 2]
            response = clients[server.url].post("/v1/events", json={"events": events})
            assert response.status_code == 200 and response.json()["stored"] == 100
            posted += events
            if batch == 10:
                workers.kill_9("w1")  # mid-stream, with whatever it had read unacknowledged
    finally:
        for http in clients.values():
            http.close()
    expected = Counter(e["user_id"] for e in posted)
    profiles = RedisProfiles(client, layout, ProfileSettings())
    deadline = time.monotonic() + 90  # the dead worker's leases expire, w2 takes over
    while True:
        got = {u: (p.n_events if (p := profiles.get(u)) is not None else 0) for u in users}
        pending = sum(client.xpending(layout.stream(p), GROUP)["pending"]
                      for p in range(PARTITIONS))
        if all(got[u] >= expected[u] for u in users) and pending == 0:
            break
        assert time.monotonic() < deadline, (got, expected, pending)
        time.sleep(0.5)
    # nothing lost (every event counted), nothing twice (no profile counted more)
    assert got == dict(expected)
    # the survivor took over every partition of the dead worker
    assert {client.get(layout.owner(p)) for p in range(PARTITIONS)} == {b"w2"}
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(EventRow).where(
                EventRow.event_id.like("load-%"))).scalar()
    finally:
        engine.dispose()
    assert stored == len(posted)

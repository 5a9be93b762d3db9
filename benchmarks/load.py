"""Load test with Locust against a real server: the upload pipeline and the mixed workload.

    uv run python benchmarks/load.py                       # both scenarios, own server
    uv run python benchmarks/load.py --scenario uploads --items 2000 --users 32
    uv run python benchmarks/load.py --scenario mixed --seconds 60 --users 32
    uv run python benchmarks/load.py --url http://host:3000 --keys var/demo-keys.json

``uploads``: 32 users post N text items, single and in batches of 10, then every
acknowledged item is read back: it must have reached a final state with its analysis.
``mixed``: text and image uploads, batches, events, feeds, claims and decisions at once.

Each prints p50/p99 per endpoint and error counts (5xx, connection errors, other), and,
since this machine is shared and noisy, each latency also as a ratio to the same request
made by one client on the idle server in the same run (the baseline).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import gevent
import httpx

# Locust runs on gevent, which must patch the standard library before anything else.
import numpy as np
from locust import HttpUser, between, task
from locust.env import Environment
from locust.exception import StopUser

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from serving.launcher import launch  # noqa: E402

FINAL_STATES = {"approved", "pending_review", "rejected", "removed", "failed"}
BATCH_SIZE = 10
TEXTS = [
    "The council approved the new cycle lanes on Tuesday after a long debate.",
    "Lemon pasta in 15 minutes: zest, butter, parmesan and plenty of black pepper.",
    "Arsenal beat Chelsea 2-1 at the Emirates with a late header #PremierLeague",
    "WIN a FREE iPhone!!! Click the link now to claim your prize before midnight",
    "Our team shipped the new search feature; latency dropped by a third.",
    "Storm warning for the coast tonight: ferries cancelled until Thursday.",
    "You won't BELIEVE what this celebrity did next (number 7 will shock you)",
    "A quiet walk through the old town, cafes opening as the sun comes up.",
]


def text_item(prefix: str) -> dict[str, Any]:
    return {"id": f"{prefix}-{uuid.uuid4().hex[:12]}", "creator_id": f"c{random.randrange(50)}",
            "title": "Load test", "text": f"{random.choice(TEXTS)} ({uuid.uuid4().hex[:6]})"}


def jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    image = np.zeros((240, 320, 3), np.uint8)
    image[:] = rng.integers(0, 255, 3)
    cv2.rectangle(image, (int(rng.integers(0, 200)), 40), (300, 200),
                  tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return bytes(data)


class Acknowledged:
    """Ids the server acknowledged (2xx), to read back after the run."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.lock = threading.Lock()

    def add(self, ids: list[str]) -> None:
        with self.lock:
            self.ids.extend(ids)


class ApiUser(HttpUser):
    abstract = True
    wait_time = between(0.05, 0.3)
    key = ""

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {self.key}"


def upload_user(key: str, counter: Iterator[int], total: int, acked: Acknowledged) -> type:
    class Uploader(ApiUser):
        """Posts text items, alone (3 in 4) or in batches, until ``total`` are sent."""

        @task
        def upload(self) -> None:
            start = next(counter)
            if start >= total:
                raise StopUser()
            if random.random() < 0.25:
                items = [text_item("ld") for _ in range(BATCH_SIZE)]
                with self.client.post("/v1/items/batch", json={"items": items},
                                      name="POST /v1/items/batch", catch_response=True) as r:
                    if r.status_code == 200:
                        acked.add([res["item"]["id"] for res in r.json()["results"]
                                   if res["status"] in (200, 201)])
                        r.success()
                # Batches count their items.
                for _ in range(BATCH_SIZE - 1):
                    next(counter)
            else:
                item = text_item("lt")
                with self.client.post("/v1/items", json=item, name="POST /v1/items (text)",
                                      catch_response=True) as r:
                    if r.status_code in (200, 201):
                        acked.add([item["id"]])
                        r.success()

    Uploader.key = key
    return Uploader


def mixed_users(keys: dict[str, str], acked: Acknowledged) -> list[type]:
    images = [jpeg(seed) for seed in range(16)]

    class Uploader(ApiUser):
        weight = 3
        key = keys["demo-uploader"]

        @task(6)
        def text(self) -> None:
            item = text_item("mt")
            r = self.client.post("/v1/items", json=item, name="POST /v1/items (text)")
            if r.status_code in (200, 201):
                acked.add([item["id"]])

        @task(1)
        def image(self) -> None:
            meta = {"id": f"mi-{uuid.uuid4().hex[:12]}", "creator_id": "cam", "title": "photo"}
            files = {"metadata": (None, json.dumps(meta), "application/json"),
                     "file": ("photo.jpg", random.choice(images), "image/jpeg")}
            r = self.client.post("/v1/items", files=files, name="POST /v1/items (image)")
            if r.status_code in (200, 201):
                acked.add([meta["id"]])

        @task(1)
        def batch(self) -> None:
            items = [text_item("mb") for _ in range(BATCH_SIZE)]
            r = self.client.post("/v1/items/batch", json={"items": items},
                                 name="POST /v1/items/batch")
            if r.status_code == 200:
                acked.add([res["item"]["id"] for res in r.json()["results"]
                           if res["status"] in (200, 201)])

    class Viewer(ApiUser):
        weight = 4
        key = keys["demo-feed"]

        @task(6)
        def feed(self) -> None:
            self.client.get("/v1/feed", params={"user_id": f"u{random.randrange(200)}", "k": 10},
                            name="GET /v1/feed")

        @task(3)
        def events(self) -> None:
            user = f"u{random.randrange(200)}"
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            events = [{"event_id": uuid.uuid4().hex, "user_id": user,
                       "item_id": f"demo-{random.randrange(1, 20):03d}", "type": kind, "ts": now,
                       "watch_ms": 8000, "item_duration_ms": 10000}
                      for kind in ("view", random.choice(["like", "skip", "complete"]))]
            self.client.post("/v1/events", json={"events": events}, name="POST /v1/events")

    moderator_keys = [keys[name] for name in ("demo-moderator", "demo-moderator-2",
                                               "demo-senior") if name in keys]
    next_moderator = itertools.count()

    class Moderator(ApiUser):
        # One user per moderator key: a moderator holds one task at a time, so two users
        # sharing a key would race to decide the same task (409 for the second).
        fixed_count = len(moderator_keys)

        def on_start(self) -> None:
            self.key = moderator_keys[next(next_moderator)]
            super().on_start()

        @task
        def claim_and_decide(self) -> None:
            r = self.client.post("/v1/review/claim", name="POST /v1/review/claim")
            if r.status_code != 200:
                return
            decision = random.choice([{"action": "approve"},
                                      {"action": "reject", "policy_codes": ["spam.scam"]}])
            self.client.post(f"/v1/review/tasks/{r.json()['id']}/decision", json=decision,
                             name="POST /v1/review/tasks/{id}/decision")

    return [Uploader, Viewer, Moderator]


def run_locust(users: list[type], count: int, seconds: float, host: str) -> Environment:
    env = Environment(user_classes=users, host=host)
    runner = env.create_local_runner()
    runner.start(count, spawn_rate=count)
    deadline = time.monotonic() + seconds
    gevent.sleep(2.0)  # spawning is asynchronous: users exist only once it has run
    while time.monotonic() < deadline and runner.user_count > 0:
        gevent.sleep(0.5)
    runner.quit()
    return env


def idle_baseline(url: str, key: str, n: int = 15) -> dict[str, float]:
    """Median latency of each request kind from one client on the idle server (ms)."""
    timings: dict[str, list[float]] = {}

    def timed(name: str, call: Callable[[], httpx.Response]) -> None:
        start = time.perf_counter()
        response = call()
        response.raise_for_status()
        timings.setdefault(name, []).append(1000 * (time.perf_counter() - start))

    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"},
                      timeout=120) as http:
        for _ in range(n):
            timed("POST /v1/items (text)", lambda: http.post("/v1/items", json=text_item("bl")))
            timed("GET /v1/feed", lambda: http.get("/v1/feed", params={"user_id": "u1"}))
        items = [text_item("bb") for _ in range(BATCH_SIZE)]
        timed("POST /v1/items/batch", lambda: http.post("/v1/items/batch",
                                                        json={"items": items}))
    return {name: statistics.median(values) for name, values in timings.items()}


def report(env: Environment, baseline: dict[str, float], title: str) -> int:
    """Prints the table; returns the number of errors (5xx, connection errors, others)."""
    print(f"\n== {title}")
    print(f"{'endpoint':<42}{'requests':>9}{'errors':>8}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'p99/idle':>10}")
    errors = 0
    for (name, _method), entry in sorted(env.stats.entries.items()):
        p50 = entry.get_response_time_percentile(0.5)
        p99 = entry.get_response_time_percentile(0.99)
        idle = baseline.get(name)
        ratio = f"{p99 / idle:>9.1f}x" if idle else f"{'-':>10}"
        print(f"{name:<42}{entry.num_requests:>9}{entry.num_failures:>8}{p50:>9.0f}{p99:>9.0f}"
              f"{ratio}")
        errors += entry.num_failures
    kinds: dict[str, int] = {}
    for error in env.stats.errors.values():
        text = str(error.error)
        kind = ("5xx" if "50" in text.split(":")[0] else
                "connection" if "Connection" in text or "Disconnected" in text else "other")
        kinds[kind] = kinds.get(kind, 0) + error.occurrences
        print(f"  error x{error.occurrences}: {error.method} {error.name}: {text[:160]}")
    total = env.stats.total
    print(f"total {total.num_requests} requests, {total.num_failures} errors "
          f"({kinds or 'none'}), {total.total_rps:.1f} req/s")
    if total.num_requests == 0:
        print("no request was made: the run measured nothing")
        return 1
    return errors


def check_final_states(url: str, key: str, ids: list[str], timeout_s: float = 300) -> int:
    """Reads back every acknowledged item; returns how many never reached a final state
    with an analysis."""
    pending = set(ids)
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"},
                      timeout=120) as http:
        while pending and time.monotonic() < deadline:
            for item_id in list(pending):
                body = http.get(f"/v1/items/{item_id}").json()
                if body.get("state") in FINAL_STATES and body.get("analysis"):
                    pending.discard(item_id)
            if pending:
                time.sleep(2)
    states = "all final with an analysis" if not pending else f"{len(pending)} not final"
    print(f"read back {len(ids)} acknowledged items: {states}")
    return len(pending)


@contextmanager
def server(url: str | None, keys_file: Path | None) -> Iterator[tuple[str, dict[str, str]]]:
    if url is not None:
        assert keys_file is not None, "--keys is needed with --url"
        yield url, json.loads(keys_file.read_text())
        return
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "var"
        launched = launch(data_dir)
        try:
            yield launched.url, json.loads((data_dir / "demo-keys.json").read_text())
        finally:
            launched.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", choices=["uploads", "mixed", "both"], default="both")
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--items", type=int, default=2000, help="text items (uploads)")
    parser.add_argument("--seconds", type=float, default=60, help="duration (mixed)")
    parser.add_argument("--url", help="an existing server (default: start one)")
    parser.add_argument("--keys", type=Path, help="its demo-keys.json (with --url)")
    args = parser.parse_args()

    failures = 0
    with server(args.url, args.keys) as (url, keys):
        baseline = idle_baseline(url, keys["demo-admin"])
        print("idle baseline, one client (median ms): "
              + ", ".join(f"{k} {v:.0f}" for k, v in baseline.items()))
        if args.scenario in ("uploads", "both"):
            acked = Acknowledged()
            counter = itertools.count()
            user = upload_user(keys["demo-uploader"], counter, args.items, acked)
            env = run_locust([user], args.users, 3600, url)
            failures += report(env, baseline, f"uploads: {args.items} text items, "
                                              f"{args.users} users, single and batch")
            failures += check_final_states(url, keys["demo-admin"], acked.ids)
        if args.scenario in ("mixed", "both"):
            acked = Acknowledged()
            env = run_locust(mixed_users(keys, acked), args.users, args.seconds, url)
            failures += report(env, baseline, f"mixed workload: {args.users} users, "
                                              f"{args.seconds:.0f} s")
            failures += check_final_states(url, keys["demo-admin"], acked.ids)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

"""The Redis event stream (issue #15): events from the API through the stream into
profiles with two workers, against the embedded path in the same run; and the feed with
profiles read from Redis against profiles in process.

Throughput. A synthetic catalog (approved items, labels, fused vectors) is written to a
database; ``--workers`` ``reelsift worker events`` processes are started on it. This
process then does what ``POST /v1/events`` does (``RedisEventLog.ingest``: validation,
the Lua append per partition) for ``--events`` events in batches of ``--batch``, and
clocks from the first append until every partition's consumer group has no lag and no
pending entry. Then every profile is read back: each user's ``n_events`` must equal the
events posted for that user, and the database log must hold each event once ("exactly
once"). The baseline, in this process: the embedded path (``EventLog.ingest``: insert
into the database and apply in process) on the same kind of events.

``--http`` posts the batches to ``POST /v1/events`` of a real ``reelsift serve`` on the
same database and Redis instead (from ``--clients`` threads), so the figure includes
HTTP, authentication and validation in the server's workers.

Feed. ``--feed-items`` items and ``--users`` users' events applied in process; the same
requests (90% known users, 10% new) through ``FeedService.feed`` with profiles in
process (multi_process off), and with profiles in Redis and the stream followed on a
thread (what a replica does: one GET a request), interleaved request by request.

    eval "$(scripts/start-test-redis.sh)"
    uv run python benchmarks/stream.py                          # SQLite, 100k events, 100k items
    uv run python benchmarks/stream.py --http --skip-feed       # through the HTTP API
    uv run python benchmarks/stream.py --feed-items 1000000     # the 1M-item feed target
    uv run python benchmarks/stream.py --database-url postgresql+psycopg://...
    eval "$(scripts/start-test-redis-cluster.sh)"               # the same on a Redis Cluster
    uv run python benchmarks/stream.py --redis-cluster \
        --redis-url "$REELSIFT_TEST_REDIS_CLUSTER_URL"
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from feed import NOW, World, percentiles, write_catalog

REPO = Path(__file__).resolve().parent.parent
MODEL_ID = "bench@1"


def events_for(world: World, users: int, per_user: int, prefix: str) -> list[dict[str, Any]]:
    out = []
    for raw in world.events(users, per_user):
        raw["event_id"] = f"{prefix}{raw['event_id']}"
        raw["ts"] = raw["ts"].isoformat()
        out.append(raw)
    # interleave users, as live traffic arrives
    order = np.random.default_rng(1).permutation(len(out))
    return [out[i] for i in order]


def start_workers(count: int, env: dict[str, str], root: Path) -> list[subprocess.Popen[bytes]]:
    processes = []
    for n in range(count):
        data_dir = root / f"worker-{n}"
        data_dir.mkdir(parents=True, exist_ok=True)
        log = (root / f"worker-{n}.log").open("wb")
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "serving.cli", "worker", "events", "--name", f"bench-w{n}"],
            cwd=REPO, env={**os.environ, **env, "REELSIFT_DATA_DIR": str(data_dir)},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    return processes


def stop_workers(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def drained(client: Any, layout: Any) -> tuple[int, int]:
    """(entries not yet delivered, delivered but not acknowledged) over all partitions."""
    from recommender.stream.layout import GROUP

    pipe = client.pipeline(transaction=False)
    for p in range(layout.partitions):
        pipe.xinfo_groups(layout.stream(p))
    lag = pending = 0
    for groups in pipe.execute():
        for group in groups:
            if group["name"].decode() == GROUP:
                lag += int(group.get("lag") or 0)
                pending += int(group["pending"])
    return lag, pending


def http_api(sessions: Any, env: dict[str, str], root: Path) -> tuple[Any, Any]:
    """``reelsift serve`` on the benchmark's database and Redis; a function that posts one
    batch to ``POST /v1/events`` with a feed key."""
    import threading

    import httpx

    from recommender.events import IngestResult
    from serving.auth import ApiKeyStore
    from serving.launcher import launch

    key = ApiKeyStore(sessions).create("feed", f"bench-{uuid.uuid4().hex[:6]}")
    started = time.perf_counter()
    server = launch(root / "server", demo=False, extra_env=env, timeout_s=900)
    print(f"server started in {time.perf_counter() - started:.0f}s at {server.url}")
    local = threading.local()

    def post(batch: list[dict[str, Any]]) -> IngestResult:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
        response = client.post("/v1/events", json={"events": batch})
        response.raise_for_status()
        return IngestResult.model_validate(response.json())

    return server, post


def throughput(args: argparse.Namespace, redis_url: str, root: Path) -> None:
    from sqlalchemy import func, select

    import recommender.tables  # noqa: F401
    from core.storage.db import make_engine, make_session_factory, upgrade
    from recommender.catalog import Catalog
    from recommender.events import EventLog
    from recommender.settings import RecommenderSettings
    from recommender.state import OnlineState
    from recommender.stream.connection import connect
    from recommender.stream.layout import StreamLayout
    from recommender.stream.log import RedisEventLog
    from recommender.stream.profiles import RedisProfiles
    from recommender.tables import EventRow

    db_url = args.database_url or f"sqlite:///{root / 'bench.db'}"
    engine = make_engine(db_url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    world = World.make(args.items, 64, 100, args.seed)
    write_catalog(db_url, world, MODEL_ID, 0, 0)
    per_user = max(1, args.events // args.users)
    settings = RecommenderSettings(index_dir=root / "index", model_dir=root / "model",
                                   background_refits=False)

    # Baseline: the embedded path in this process.
    base_events = events_for(world, args.users, max(1, per_user // 4), "base-")
    state = OnlineState.create(settings, Catalog.load(sessions, settings))
    log = EventLog(sessions, state)
    t0 = time.perf_counter()
    for start in range(0, len(base_events), args.batch):
        log.ingest(base_events[start:start + args.batch])
    base_rate = len(base_events) / (time.perf_counter() - t0)
    print(f"baseline, embedded path in one process (EventLog.ingest: store + apply): "
          f"{len(base_events)} events, {base_rate:,.0f} events/s")

    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    layout = StreamLayout(namespace, args.partitions)
    client = connect(redis_url, cluster=args.redis_cluster)
    env = {"REELSIFT_DATABASE_URL": db_url, "REELSIFT_REDIS_URL": redis_url,
           "REELSIFT_REDIS_CLUSTER": "true" if args.redis_cluster else "false",
           "REELSIFT_REDIS_NAMESPACE": namespace,
           "REELSIFT_STREAM_PARTITIONS": str(args.partitions)}
    workers = start_workers(args.workers, env, root)
    try:
        deadline = time.monotonic() + 300
        while sum(client.exists(layout.owner(p)) for p in range(args.partitions)) < \
                args.partitions or client.zcard(layout.workers) < args.workers:
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start; see " + str(root))
            time.sleep(0.2)
        time.sleep(2 * 5.0 / 3)  # two lease rounds: the partitions settle between workers
        owners = Counter(cast(bytes, client.get(layout.owner(p))).decode()
                         for p in range(args.partitions))
        print(f"{args.workers} workers own {dict(owners)} of {args.partitions} partitions")

        events = events_for(world, args.users, per_user, "s-")
        batches = [events[start:start + args.batch]
                   for start in range(0, len(events), args.batch)]
        if args.http:
            server, post = http_api(sessions, env, root)
        else:
            api = RedisEventLog(client, layout, sessions, None)
            server, post = None, api.ingest
        t0 = time.perf_counter()
        try:
            with ThreadPoolExecutor(args.clients) as pool:
                for result in pool.map(post, batches):
                    assert result.duplicates == 0, result
        finally:
            if server is not None:
                server.stop()
        appended = time.perf_counter() - t0
        while drained(client, layout) != (0, 0):
            time.sleep(0.01)
        total = time.perf_counter() - t0
        rate = len(events) / total
        where = "POST /v1/events" if args.http else "RedisEventLog.ingest in this process"
        print(f"Redis stream, {args.workers} workers, events through {where} "
              f"({args.clients} clients, {args.batch} a batch): {len(events)} events appended in "
              f"{appended:.2f}s ({len(events) / appended:,.0f} events/s at the API), all "
              f"applied after {total:.2f}s: {rate:,.0f} events/s "
              f"({rate / base_rate:.2f}x the embedded path; target >= 5,000)")

        expected = Counter(e["user_id"] for e in events)
        profiles = RedisProfiles(client, layout, settings.profile)
        pipe = client.pipeline(transaction=False)
        users = sorted(expected)
        for user in users:
            pipe.get(layout.profile(user))
        counts = {u: (p.n_events if (p := profiles.decode(u, raw)) else 0)
                  for u, raw in zip(users, pipe.execute(), strict=True)}
        with sessions() as session:
            stored = session.scalar(select(func.count()).select_from(EventRow)
                                    .where(EventRow.event_id.like("s-%")))
        exact = counts == dict(expected) and stored == len(events)
        print(f"exactly once: {'yes' if exact else 'NO'} (profiles count "
              f"{sum(counts.values())} of {len(events)} events, "
              f"{sum(counts[u] != expected[u] for u in users)} users off; database log "
              f"{stored} rows)")
    finally:
        stop_workers(workers)
        keys = list(client.scan_iter(f"{namespace}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start:start + 500])
        engine.dispose()


def feed_latency(args: argparse.Namespace, redis_url: str) -> None:
    from core.contracts import Event
    from recommender.catalog import Catalog, CatalogItem
    from recommender.ranking import HeuristicRanker
    from recommender.service import FeedService, limit_threads
    from recommender.settings import RecommenderSettings
    from recommender.state import OnlineState
    from recommender.stream.codec import encode_profile
    from recommender.stream.connection import connect
    from recommender.stream.layout import StreamLayout
    from recommender.stream.log import RedisEventLog
    from recommender.stream.profiles import RedisProfiles

    world = World.make(args.feed_items, 256, 300, args.seed)
    settings = RecommenderSettings(exploration_epsilon=0.1)
    catalog = Catalog(settings, world.dim, MODEL_ID)
    catalog.add_many([
        CatalogItem(id=f"i{j}", creator_id=world.creator(j),
                    created_at=world.created_at(j).timestamp(), tags=world.tags(j),
                    categories=world.labels(j)) for j in range(world.n)], world.vectors)
    limit_threads(1)
    clock = [NOW.timestamp()]
    state = OnlineState.create(settings, catalog, clock=lambda: clock[0])
    for raw in world.events(args.feed_users, 40):
        state.apply(Event.model_validate(raw))
    state.cohorts.refresh(state.profiles, clock[0])
    state.collaborative.refresh()

    client = connect(redis_url, cluster=args.redis_cluster)
    layout = StreamLayout(f"bench-{uuid.uuid4().hex[:8]}", args.partitions)
    pipe = client.pipeline(transaction=False)
    for user in state.profiles.users():
        pipe.set(layout.profile(user), encode_profile(state.profiles.get(user)))  # type: ignore[arg-type]
    pipe.execute()
    shared = dataclasses.replace(state, profiles=RedisProfiles(client, layout, settings.profile))
    replica_settings = settings.model_copy(update={"multi_process": True})
    ranker = HeuristicRanker(settings.weights)
    local = FeedService(state, ranker)
    stream_log = RedisEventLog(client, layout, None, shared)  # type: ignore[arg-type]
    stream_log.follow()  # as a replica does: feed requests read Redis for the profile only
    remote = FeedService(shared, ranker, settings=replica_settings, events=stream_log)
    users = world.request_users(args.requests, args.feed_users)
    for user in users[:20]:
        local.feed(user, 10)
        remote.feed(user, 10)
    local_ms, remote_ms = [], []
    for user in users:  # interleaved: both see the same machine load
        t = time.perf_counter()
        a = local.feed(user, 10)
        local_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        b = remote.feed(user, 10)
        remote_ms.append((time.perf_counter() - t) * 1000)
        assert a.cold_start == b.cold_start
    l50, l99 = percentiles(np.asarray(local_ms))
    r50, r99 = percentiles(np.asarray(remote_ms))
    print(f"feed at {world.n:,} items ({catalog.index.kind}), {args.requests} requests: "
          f"profiles in process p50 {l50:.2f} ms p99 {l99:.2f} ms; profiles in Redis "
          f"(one GET per request) p50 {r50:.2f} ms p99 {r99:.2f} ms "
          f"(p99 ratio {r99 / l99:.2f}x; target p99 <= 20 ms)")
    stream_log.close()
    keys = list(client.scan_iter(f"{layout.namespace}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start:start + 500])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis-url", default=os.environ.get("REELSIFT_TEST_REDIS_URL"))
    parser.add_argument("--redis-cluster", action="store_true",
                        help="--redis-url names a node of a Redis Cluster (see "
                             "scripts/start-test-redis-cluster.sh)")
    parser.add_argument("--database-url", help="default: SQLite in a temp dir")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--items", type=int, default=20_000, help="catalog of the workers")
    parser.add_argument("--batch", type=int, default=500, help="events per POST")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--feed-items", type=int, default=100_000)
    parser.add_argument("--feed-users", type=int, default=500)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--http", action="store_true",
                        help="post the events to a real server (reelsift serve) on the same "
                        "database and Redis instead of calling RedisEventLog.ingest here")
    parser.add_argument("--clients", type=int, default=2, help="posting threads")
    parser.add_argument("--skip-feed", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    if not args.redis_url:
        parser.error('no Redis: eval "$(scripts/start-test-redis.sh)" or --redis-url')
    with tempfile.TemporaryDirectory(prefix="reelsift-stream-bench-") as tmp:
        if not args.skip_throughput:
            throughput(args, args.redis_url, Path(tmp))
        if not args.skip_feed:
            feed_latency(args, args.redis_url)


if __name__ == "__main__":
    main()

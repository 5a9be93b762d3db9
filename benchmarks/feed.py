"""Feed latency, ANN candidate recall and index memory on a synthetic catalog; and the
feed's request rate over HTTP against the real server.

In process (default). The catalog (items with precomputed 256-d fused vectors, tags,
categories and creators) is imported through ``Catalog.add_many`` (the path
``Catalog.load`` takes, minus the database read); users' events go through
``OnlineState.apply`` (what ``EventLog.ingest`` does after storing). Printed figures:

- build time and index kind (exact below 20k items, HNSW below 250k, IVF above);
- index memory per item (faiss vectors + graph or lists + alive bitmap) and process RSS
  growth per item for the whole catalog (Python-side maps included);
- ANN recall@100 (and @150, the embedding channel's quota) against exact search for
  user-like queries, and the ANN search time as a ratio to exact search;
- feed latency p50/p99 of ``FeedService.feed`` (k=10), and as a ratio to one exact
  brute-force search over the same catalog, run in the same process.

Over HTTP (``--http``). Starts ``reelsift serve --demo`` on a fresh data dir, reads the
fused-vector model id that the server's pipeline gives its items, stops it, writes the
synthetic catalog (approved items, labels, fused vectors of that model) and the users'
events straight into its database, then:

1. opens a ``Recommender`` on that database in this process and times the same request
   mix one at a time (the in-process baseline: requests a second one thread can serve);
2. starts the server again (it loads the catalog and replays the events) and drives,
   from ``--concurrency`` threads with keep-alive connections: ``GET /livez`` (BentoML's
   HTTP stack alone), ``GET /v1/me`` (plus FastAPI routing and API-key authentication)
   and ``GET /v1/feed`` (plus the feed), the last for ``--duration`` seconds; prints
   requests/s, p50/p99, the CPU milliseconds the server's processes and this client
   spent per request, and the ratio of the HTTP rate to the in-process baseline.

``--server-env KEY=VALUE`` passes settings to the server, e.g. one API worker instead
of the default two: ``--server-env REELSIFT_API_WORKERS=1``; every request matching
(no candidate cache, here and in the baseline):
``--server-env REELSIFT_RECOMMENDER__CANDIDATE_CACHE_SECONDS=0``. In process, the
latency is measured without the candidate cache, then with it. The load generator
(``http.client``, lighter than httpx) shares this machine's cores with the server.

    uv run python benchmarks/feed.py                   # 100k items
    uv run python benchmarks/feed.py --items 1000000   # the 1M target (IVF: ~1 min build)
    uv run python benchmarks/feed.py --http            # 100k items over HTTP (~5 min)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from serving.launcher import launch, stop_process

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2025, 6, 1, tzinfo=UTC)
EVENT_KINDS = ("view", "complete", "like", "skip", "impression")


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def percentiles(ms: np.ndarray) -> tuple[float, float]:
    p50, p99 = np.percentile(ms, [50, 99])
    return float(p50), float(p99)


@dataclass
class World:
    """Items around category centroids, and users who like two categories each."""

    n: int
    dim: int
    categories: int
    cats: np.ndarray
    vectors: np.ndarray
    ages_s: np.ndarray
    rng: np.random.Generator

    @classmethod
    def make(cls, n: int, dim: int, categories: int, seed: int) -> World:
        rng = np.random.default_rng(seed)
        centroids = rng.normal(size=(categories, dim)).astype(np.float32)
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        cats = rng.integers(0, categories, size=n)
        vectors = np.empty((n, dim), dtype=np.float32)
        for start in range(0, n, 100_000):  # in blocks: no float64 copy of a 1M matrix
            block = slice(start, min(start + 100_000, n))
            noise = rng.normal(size=(block.stop - start, dim)).astype(np.float32)
            vectors[block] = centroids[cats[block]] + 0.8 * noise / np.sqrt(dim)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        ages_s = np.sort(rng.uniform(0, 60 * 86400, size=n))[::-1]
        return cls(n, dim, categories, cats, vectors, ages_s, rng)

    def creator(self, j: int) -> str:
        return f"c{j % max(self.n // 50, 1)}"

    def tags(self, j: int) -> tuple[str, str]:
        return (f"t{self.cats[j]}", f"t{self.cats[j]}-{j % 5}")

    def labels(self, j: int) -> tuple[tuple[str, float], tuple[str, float]]:
        return ((f"k{self.cats[j] // 10}", 0.9), (f"k{self.cats[j]}", 0.8))

    def created_at(self, j: int) -> datetime:
        return NOW - timedelta(seconds=float(self.ages_s[j]))

    def user_queries(self, count: int) -> np.ndarray:
        """Like user vectors: the mean of five liked items from two favourite categories."""
        queries = []
        for _ in range(count):
            pool = np.flatnonzero(np.isin(self.cats, self.rng.integers(0, self.categories, 2)))
            q = self.vectors[self.rng.choice(pool, size=5)].mean(axis=0)
            queries.append(q / np.linalg.norm(q))
        return np.vstack(queries).astype(np.float32)

    def events(self, users: int, per_user: int) -> Iterator[dict[str, Any]]:
        """80% of a user's events on two favourite categories, the rest anywhere."""
        by_cat = np.argsort(self.cats, kind="stable")
        starts = np.searchsorted(self.cats[by_cat], np.arange(self.categories + 1))
        for u in range(users):
            favourite = self.rng.integers(0, self.categories, size=2)
            pool = np.concatenate([by_cat[starts[c]:starts[c + 1]] for c in favourite])
            for e in range(per_user):
                j = (int(self.rng.choice(pool)) if self.rng.random() < 0.8
                     else int(self.rng.integers(0, self.n)))
                yield {
                    "event_id": f"e{u}-{e}", "user_id": f"u{u}", "item_id": f"i{j}",
                    "type": EVENT_KINDS[int(self.rng.integers(0, len(EVENT_KINDS)))],
                    "ts": NOW - timedelta(minutes=per_user - e),
                    "watch_ms": int(self.rng.integers(500, 30000)), "item_duration_ms": 30000,
                }

    def request_users(self, count: int, users: int) -> list[str]:
        """90% known users, 10% new ones (cold start)."""
        return [
            f"u{int(self.rng.integers(0, users))}" if self.rng.random() < 0.9 else f"new{r}"
            for r in range(count)
        ]


def timed(fn: Callable[[], object], repeat: int) -> np.ndarray:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return np.asarray(out)


# -- in process --------------------------------------------------------------------------
def in_process(args: argparse.Namespace) -> None:
    import faiss

    from core.contracts import Event
    from recommender.catalog import Catalog, CatalogItem
    from recommender.ranking import HeuristicRanker
    from recommender.service import FeedService, limit_threads
    from recommender.settings import RecommenderSettings
    from recommender.state import OnlineState

    world = World.make(args.items, args.dim, args.categories, args.seed)
    n = world.n
    items = [
        CatalogItem(id=f"i{j}", creator_id=world.creator(j),
                    created_at=world.created_at(j).timestamp(), tags=world.tags(j),
                    categories=world.labels(j))
        for j in range(n)
    ]
    # every request matches (no candidate cache): the latency target is for this case
    settings = RecommenderSettings(exploration_epsilon=0.1, candidate_cache_seconds=0)
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    catalog = Catalog(settings, world.dim, "bench@1")
    catalog.add_many(items, world.vectors)
    build_s = time.perf_counter() - t0
    rss_per_item = (rss_bytes() - rss0) / n
    index = catalog.index
    print(f"catalog: {n} items, {world.dim}-d, index={index.kind}, built in {build_s:.1f}s "
          f"({faiss.omp_get_max_threads()} threads)")
    print(f"memory: index {index.memory_bytes() / n:.0f} B/item; process RSS growth "
          f"{rss_per_item:.0f} B/item (vectors, graph, id maps, metadata, inverted indexes)")

    # What Recommender.open does once the catalog is built: one thread per query.
    limit_threads(settings.serving_threads or 1)

    qmat = world.user_queries(args.queries)
    # exact search over the benchmark's own matrix (no second copy of a 1M catalog)
    _, truth = faiss.knn(qmat, world.vectors, 150, metric=faiss.METRIC_INNER_PRODUCT)
    tuning = (f"efSearch={max(settings.hnsw_ef_search, 200)}" if index.kind == "hnsw" else
              f"nprobe={settings.ivf_nprobe}" if index.kind == "ivf" else "exact")
    for k in (100, 150):
        recalls = []
        for q, true_rows in zip(qmat, truth[:, :k], strict=True):
            got = {hit for hit, _ in index.search(q, k)}
            recalls.append(len(got & {f"i{r}" for r in true_rows}) / k)
        print(f"ANN recall@{k} vs exact ({index.kind}, {tuning}, {args.queries} queries): "
              f"{np.mean(recalls):.3f}")
    qi = iter(np.tile(qmat, (args.requests // len(qmat) + 1, 1)))
    exact_ms = timed(lambda: faiss.knn(next(qi)[None, :], world.vectors, 100,
                                       metric=faiss.METRIC_INNER_PRODUCT), min(args.requests, 300))
    qi = iter(np.tile(qmat, (args.requests // len(qmat) + 1, 1)))
    ann_ms = timed(lambda: index.search(next(qi), 150), min(args.requests, 300))
    e50 = float(np.percentile(exact_ms, 50))
    a50 = float(np.percentile(ann_ms, 50))
    print(f"search: ANN top-150 p50 {a50:.2f} ms; exact top-100 p50 {e50:.2f} ms "
          f"(ANN / exact = {a50 / e50:.3f})")

    clock = [NOW.timestamp()]
    state = OnlineState.create(settings, catalog, clock=lambda: clock[0])
    n_events = 0
    for raw in world.events(args.users, args.events_per_user):
        state.apply(Event.model_validate(raw))
        n_events += 1
    state.cohorts.refresh(state.profiles, clock[0])
    t0 = time.perf_counter()
    fit = state.collaborative.refresh()  # what the background refit serves
    print(f"collaborative fit: {len(fit.item_ids) if fit else 0} engaged items, "
          f"EASE {'on' if fit is not None and fit.ease is not None else 'off'}, "
          f"{time.perf_counter() - t0:.1f}s")
    service = FeedService(state, HeuristicRanker(settings.weights))
    for u in range(20):  # warm-up
        service.feed(f"u{u}", 10)
    users = world.request_users(args.requests, args.users)
    it = iter(users)
    feed_ms = timed(lambda: service.feed(next(it), 10), len(users))
    p50, p99 = percentiles(feed_ms)
    print(f"events applied: {n_events} for {args.users} users")
    print(f"feed latency (k=10, {args.requests} requests, 10% new users): p50 {p50:.2f} ms, "
          f"p99 {p99:.2f} ms, mean {feed_ms.mean():.2f} ms")
    print(f"baseline: one exact search over the catalog p50 {e50:.2f} ms; feed p50 / exact "
          f"p50 = {p50 / e50:.2f}x, feed p99 / exact p50 = {p99 / e50:.2f}x")
    # The same requests with the candidate cache (the serving default): a user's repeat
    # request within candidate_cache_seconds skips matching.
    cached = FeedService(state, HeuristicRanker(settings.weights), settings=settings.model_copy(
        update={"candidate_cache_seconds": 30.0}))
    it = iter(users)
    cached_ms = timed(lambda: cached.feed(next(it), 10), len(users))
    c50, c99 = percentiles(cached_ms)
    cache = cached.candidate_cache
    assert cache is not None
    print(f"with the candidate cache ({cache.hits} hits, {cache.misses} misses: "
          f"{len(set(users))} users in {len(users)} requests): p50 {c50:.2f} ms, p99 "
          f"{c99:.2f} ms; p50 / uncached p50 = {c50 / p50:.2f}x")


# -- over HTTP ---------------------------------------------------------------------------
def start_server(data_dir: Path, *, demo: bool, timeout_s: float = 900,
                 extra_env: dict[str, str] | None = None,
                 ) -> tuple[str, subprocess.Popen[bytes], Path]:
    server = launch(data_dir, demo=demo, extra_env=extra_env, timeout_s=timeout_s)
    return server.url, server.process, server.log


stop_server = stop_process


def fused_model(db_url: str) -> tuple[str, int]:
    """The fused-vector model the server's pipeline gave the demo items."""
    from sqlalchemy import func, select

    from core.storage.db import make_engine, make_session_factory
    from core.storage.tables import EmbeddingRow

    engine = make_engine(db_url)
    with make_session_factory(engine)() as session:
        row = session.execute(
            select(EmbeddingRow.model_id, EmbeddingRow.dim, func.count())
            .where(EmbeddingRow.kind == "fused")
            .group_by(EmbeddingRow.model_id, EmbeddingRow.dim)
            .order_by(func.count().desc()).limit(1)
        ).first()
    engine.dispose()
    if row is None:
        raise RuntimeError("the demo items got no fused vectors: is the text model missing?")
    return str(row[0]), int(row[1])


def write_catalog(db_url: str, world: World, model_id: str, users: int, per_user: int) -> None:
    """Approved items, their labels and fused vectors, and events, in bulk inserts."""
    from sqlalchemy import insert

    import recommender.tables  # noqa: F401  (the events table)
    from core.storage.db import make_engine
    from core.storage.tables import AnalysisRow, EmbeddingRow, ItemRow
    from recommender.tables import EventRow

    engine = make_engine(db_url)
    chunk = 5000
    with engine.begin() as conn:
        for start in range(0, world.n, chunk):
            rows = range(start, min(start + chunk, world.n))
            conn.execute(insert(ItemRow), [{
                "id": f"i{j}", "creator_id": world.creator(j), "title": f"item {j}",
                "text": "", "tags": list(world.tags(j)), "state": "approved",
                "content_sha256": f"{j:064x}", "created_at": world.created_at(j),
            } for j in rows])
            conn.execute(insert(AnalysisRow), [{
                "item_id": f"i{j}", "payload": {"labels": [
                    {"id": label, "name": label, "path": [label], "confidence": conf}
                    for label, conf in world.labels(j)]},
            } for j in rows])
            conn.execute(insert(EmbeddingRow), [{
                "item_id": f"i{j}", "kind": "fused", "model_id": model_id,
                "dim": world.dim, "vector": world.vectors[j].tobytes(),
            } for j in rows])
        events = list(world.events(users, per_user))
        for start in range(0, len(events), chunk):
            conn.execute(insert(EventRow), [{**e, "context": {}}
                                            for e in events[start:start + chunk]])
    engine.dispose()


def in_process_baseline(db_url: str, data_dir: Path, model_id: str, users: list[str],
                        candidate_cache_seconds: float | None = None) -> np.ndarray:
    """The same requests through ``Recommender.feed`` here, one at a time."""
    from core.storage.db import make_engine, make_session_factory
    from recommender.service import Recommender
    from recommender.settings import RecommenderSettings

    engine = make_engine(db_url)
    settings = RecommenderSettings(
        index_dir=data_dir / "bench-index", model_dir=data_dir / "models" / "ranker",
        fused_model_id=model_id)
    if candidate_cache_seconds is not None:
        settings = settings.model_copy(
            update={"candidate_cache_seconds": candidate_cache_seconds})
    rec = Recommender.open(make_session_factory(engine), settings)
    print(f"in process: catalog {len(rec.catalog)} items ({rec.catalog.index.kind}), "
          f"{len(rec.state.profiles)} users")
    for user in users[:20]:
        rec.feed.feed(user, 10)
    it = iter(users)
    ms = timed(lambda: rec.feed.feed(next(it), 10), len(users))
    engine.dispose()
    return ms


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of a process and all its descendants (the server's workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    cpu: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the name: state, ppid, ..., utime and stime at 11 and 12
        parent[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = int(fields[11]) + int(fields[12])
    total = 0
    for pid, ticks in cpu.items():
        walk = pid
        while walk > 1 and walk != root:
            walk = parent.get(walk, 0)
        if walk == root:
            total += ticks
    return total / tick


@dataclass
class Drive:
    latencies_ms: np.ndarray
    errors: int
    elapsed_s: float
    server_cpu_s: float
    client_cpu_s: float

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s

    def line(self, what: str) -> str:
        n = max(len(self.latencies_ms), 1)
        p50, p99 = percentiles(self.latencies_ms) if len(self.latencies_ms) else (0.0, 0.0)
        return (f"{what:<14} {self.rate:7.0f} req/s  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  "
                f"server CPU {1000 * self.server_cpu_s / n:5.2f} ms/req  client CPU "
                f"{1000 * self.client_cpu_s / n:5.2f} ms/req  errors {self.errors}")


def drive(url: str, server_pid: int, paths: list[str], headers: dict[str, str], concurrency: int,
          duration_s: float) -> Drive:
    """GET ``paths`` round robin from ``concurrency`` threads over keep-alive connections."""
    import http.client
    from urllib.parse import urlsplit

    where = urlsplit(url)
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    stop = time.monotonic() + duration_s

    def worker(w: int) -> None:
        conn = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=60)
        n = w
        try:
            while time.monotonic() < stop:
                t = time.perf_counter()
                conn.request("GET", paths[n % len(paths)], headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    latencies[w].append((time.perf_counter() - t) * 1000)
                else:
                    errors[w] += 1
                n += concurrency
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(concurrency)]
    cpu0, server0, t0 = time.process_time(), tree_cpu_seconds(server_pid), time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - t0
    return Drive(np.asarray([x for per in latencies for x in per]), sum(errors), elapsed,
                 tree_cpu_seconds(server_pid) - server0, time.process_time() - cpu0)


def over_http(args: argparse.Namespace) -> None:
    import httpx

    from serving.settings import Settings

    reuse = args.reuse is not None
    root = args.reuse or Path(tempfile.mkdtemp(prefix="reelsift-feed-bench-"))
    data_dir = root / "var"
    db_url = Settings(data_dir=data_dir).db_url
    t0 = time.monotonic()
    if not reuse:
        url, process, log = start_server(data_dir, demo=True)
        stop_server(process)
    keys = json.loads((data_dir / "demo-keys.json").read_text())
    model_id, dim = fused_model(db_url)
    print(f"data dir {root}; fused model {model_id} ({dim}-d)")
    world = World.make(args.items, dim, args.categories, args.seed)
    if not reuse:
        t0 = time.monotonic()
        write_catalog(db_url, world, model_id, args.users, args.events_per_user)
        print(f"wrote {world.n} approved items and {args.users * args.events_per_user} "
              f"events in {time.monotonic() - t0:.0f}s")
    users = world.request_users(max(args.requests, 2000), args.users)

    extra_env = dict(kv.split("=", 1) for kv in args.server_env)
    # the baseline caches candidates as the server is told to (default: as it does)
    cache_s = extra_env.get("REELSIFT_RECOMMENDER__CANDIDATE_CACHE_SECONDS")
    base_ms = in_process_baseline(db_url, data_dir, model_id, users[: args.requests],
                                  None if cache_s is None else float(cache_s))
    gc.collect()  # the baseline's catalog goes before the server loads its own
    b50, b99 = percentiles(base_ms)
    base_rate = 1000.0 / float(base_ms.mean())
    print(f"in process, one at a time: p50 {b50:.2f} ms, p99 {b99:.2f} ms, "
          f"{base_rate:.0f} requests/s")

    t0 = time.monotonic()
    url, process, log = start_server(data_dir, demo=False, extra_env=extra_env)
    auth = {"Authorization": f"Bearer {keys['demo-feed']}"}
    feeds = [f"/v1/feed?user_id={user}&k=10" for user in users]
    try:
        print(f"server up with the catalog in {time.monotonic() - t0:.0f}s ({url}"
              f"{', ' + ' '.join(args.server_env) if args.server_env else ''})")
        with httpx.Client(base_url=url, headers=auth, timeout=120) as client:
            first = client.get("/v1/feed", params={"user_id": users[0], "k": 10})
            first.raise_for_status()
            print(f"first feed: {len(first.json()['items'])} items, "
                  f"{first.json()['candidates']} candidates")
        server = process.pid
        drive(url, server, feeds, auth, args.concurrency, 3.0)  # warm-up
        print(f"over HTTP, {args.concurrency} keep-alive clients:")
        print(drive(url, server, ["/livez"], {}, args.concurrency, 5.0).line("GET /livez"))
        print(drive(url, server, ["/v1/me"], auth, args.concurrency, 5.0).line("GET /v1/me"))
        feed = drive(url, server, feeds, auth, args.concurrency, args.duration)
        print(feed.line("GET /v1/feed"))
    finally:
        stop_server(process)
    print(f"HTTP feed requests/s / in-process requests/s (one thread) = "
          f"{feed.rate / base_rate:.2f}")
    print(f"(server log: {log})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=256, help="in process; HTTP uses the model's")
    parser.add_argument("--categories", type=int, default=300)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--events-per-user", type=int, default=40)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--http", action="store_true", help="measure over HTTP as well")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--reuse", type=Path, help="a data dir root an earlier --http run "
                        "prepared (same --items and --seed)")
    args = parser.parse_args()
    if args.http:
        over_http(args)
    else:
        in_process(args)


if __name__ == "__main__":
    main()

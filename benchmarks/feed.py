"""Feed latency, ANN candidate recall and index memory on a synthetic catalog.

The catalog (items with precomputed 256-d fused vectors, tags, categories and creators)
is imported in process through ``Catalog.add_many`` (the path ``Catalog.load`` takes per
chunk, minus the database read); users' events go through ``OnlineState.apply`` (what
``EventLog.ingest`` does after storing). Printed figures:

- feed latency p50/p99 of ``FeedService.feed`` (k=10), and as a ratio to one exact
  brute-force search (``IndexFlatIP``) over the same catalog, run in the same process;
- ANN recall@100 of the HNSW index against exact search, for user-like queries;
- index memory per item (faiss vectors + graph + alive bitmap) and process RSS growth per
  item for the whole catalog (Python-side maps included).

    uv run python benchmarks/feed.py                # 100k items
    uv run python benchmarks/feed.py --items 1000000  # the 1M target (slow to build)
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime, timedelta

import numpy as np


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--categories", type=int, default=300)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--events-per-user", type=int, default=40)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import faiss

    from core.contracts import Event
    from recommender.catalog import Catalog, CatalogItem
    from recommender.ranking import HeuristicRanker
    from recommender.service import FeedService
    from recommender.settings import RecommenderSettings
    from recommender.state import OnlineState

    rng = np.random.default_rng(args.seed)
    n, dim = args.items, args.dim
    now = datetime(2025, 6, 1, tzinfo=UTC)
    centroids = rng.normal(size=(args.categories, dim)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    cats = rng.integers(0, args.categories, size=n)
    vectors = centroids[cats] + 0.8 * rng.normal(size=(n, dim)).astype(np.float32) / np.sqrt(dim)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ages = np.sort(rng.uniform(0, 60 * 86400, size=n))[::-1]
    items = [
        CatalogItem(
            id=f"i{j}",
            creator_id=f"c{j % max(n // 50, 1)}",
            created_at=(now - timedelta(seconds=float(ages[j]))).timestamp(),
            tags=(f"t{cats[j]}", f"t{cats[j]}-{j % 5}"),
            categories=((f"k{cats[j] // 10}", 0.9), (f"k{cats[j]}", 0.8)),
        )
        for j in range(n)
    ]
    settings = RecommenderSettings(exploration_epsilon=0.1)
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    catalog = Catalog(settings, dim, "bench@1")
    catalog.add_many(items, vectors)
    build_s = time.perf_counter() - t0
    rss_per_item = (rss_bytes() - rss0) / n
    print(
        f"catalog: {n} items, {dim}-d, index={catalog.index.kind}, built in {build_s:.1f}s "
        f"({faiss.omp_get_max_threads()} threads)"
    )
    print(
        f"memory: index {catalog.index.memory_bytes() / n:.0f} B/item; process RSS growth "
        f"{rss_per_item:.0f} B/item (vectors, graph, id maps, metadata, inverted indexes)"
    )

    # Serving answers one query at a time: OpenMP threads only contend (set
    # OMP_NUM_THREADS=1 for feed replicas); the build above used them all.
    faiss.omp_set_num_threads(1)

    # ANN candidate recall@100 against exact search
    exact = faiss.IndexFlatIP(dim)
    exact.add(vectors)
    queries = []
    for _ in range(args.queries):
        # like a user vector: the mean of a few liked items from two favourite categories
        pool = np.flatnonzero(np.isin(cats, rng.integers(0, args.categories, size=2)))
        liked = vectors[rng.choice(pool, size=5)]
        q = liked.mean(axis=0)
        queries.append(q / np.linalg.norm(q))
    qmat = np.vstack(queries).astype(np.float32)
    _, truth = exact.search(qmat, 100)
    recalls = []
    for q, true_rows in zip(qmat, truth, strict=True):
        got = {hit for hit, _ in catalog.index.search(q, 100)}
        recalls.append(len(got & {f"i{r}" for r in true_rows}) / 100)
    print(
        f"ANN recall@100 vs exact (efSearch={max(settings.hnsw_ef_search, 200)}, {args.queries} "
        f"queries): {np.mean(recalls):.3f}"
    )

    # users with history, applied online
    clock = [now.timestamp()]
    state = OnlineState.create(settings, catalog, clock=lambda: clock[0])
    kinds = ["view", "complete", "like", "skip", "impression"]
    n_events = 0
    for u in range(args.users):
        favourite = rng.integers(0, args.categories, size=2)
        pool = np.flatnonzero(np.isin(cats, favourite))
        for e in range(args.events_per_user):
            j = int(rng.choice(pool)) if rng.random() < 0.8 else int(rng.integers(0, n))
            kind = kinds[int(rng.integers(0, len(kinds)))]
            state.apply(
                Event(
                    event_id=f"e{u}-{e}",
                    user_id=f"u{u}",
                    item_id=f"i{j}",
                    type=kind,  # type: ignore[arg-type]
                    ts=now - timedelta(minutes=args.events_per_user - e),
                    watch_ms=int(rng.integers(500, 30000)),
                    item_duration_ms=30000,
                )
            )
            n_events += 1
    state.cohorts.refresh(state.profiles, clock[0])
    service = FeedService(state, HeuristicRanker())

    def timed(fn, repeat):  # type: ignore[no-untyped-def]
        out = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t) * 1000)
        return np.asarray(out)

    for u in range(20):  # warm-up
        service.feed(f"u{u}", 10)
    users = [
        f"u{int(rng.integers(0, args.users))}" if rng.random() < 0.9 else f"new{r}"
        for r in range(args.requests)
    ]
    it = iter(users)
    feed_ms = timed(lambda: service.feed(next(it), 10), len(users))
    qi = iter(np.tile(qmat, (args.requests // len(qmat) + 1, 1)))
    exact_ms = timed(lambda: exact.search(next(qi)[None, :], 100), args.requests)
    p50, p99 = np.percentile(feed_ms, [50, 99])
    e50 = float(np.percentile(exact_ms, 50))
    print(f"events applied: {n_events} for {args.users} users")
    print(
        f"feed latency (k=10, {args.requests} requests, 10% new users): p50 {p50:.2f} ms, "
        f"p99 {p99:.2f} ms"
    )
    print(
        f"baseline: one exact IndexFlatIP search p50 {e50:.2f} ms; feed p50 / exact p50 = "
        f"{p50 / e50:.2f}x"
    )


if __name__ == "__main__":
    main()

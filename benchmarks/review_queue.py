"""Review queue throughput: claim + decide pairs per second with concurrent moderators.

Each run fills a fresh database with N open tasks, lets C moderator threads claim and
decide until the queue is empty, then checks that every task was decided exactly once
by the moderator who claimed it. The figure that matters is the ratio against the
single-moderator run in the same process (the machine is shared; absolutes drift).

Runs with moderators spread over several engines stand for separate replicas (each
engine has its own connection pool; the database alone arbitrates between them).

PostgreSQL runs when ``REELSIFT_BENCH_POSTGRES_URL`` (or ``REELSIFT_TEST_POSTGRES_URL``)
names a server; a scratch database is created and dropped.

    uv run python benchmarks/review_queue.py [--tasks 2000] [--clients 16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, func, insert, select, text

import core.storage.tables
import moderation.review.tables
from core.contracts import ItemState, RiskCategory
from core.storage.db import Base, make_engine, make_session_factory, write_transaction
from core.storage.items import ItemStore
from moderation.policy import Policy, TaskReason
from moderation.review import ReviewService
from serving.auth import Principal, Role

assert core.storage.tables and moderation.review.tables  # tables registered on Base


def fill(engine: Engine, policy: Policy, tasks: int) -> None:
    Base.metadata.create_all(engine)
    store = ItemStore(make_session_factory(engine))
    service = ReviewService(store.sessions, store, policy)
    ids = [f"b{n:06d}" for n in range(tasks)]
    with store.sessions() as session, session.begin():
        session.execute(
            insert(core.storage.tables.ItemRow),
            [
                {
                    "id": i,
                    "creator_id": "c",
                    "title": "",
                    "text": "",
                    "tags": [],
                    "state": ItemState.PENDING_REVIEW.value,
                    "content_sha256": "0" * 64,
                }
                for i in ids
            ],
        )
    now = service.now()
    with write_transaction(store.sessions) as session:
        for n, item_id in enumerate(ids):
            service.queue.open(
                session,
                item_id=item_id,
                reason=TaskReason.AUTO_RISK,
                now=now,
                created_by="bench",
                severity=(n % 101) / 100,
                categories=[RiskCategory.SPAM],
            )


def run(url: str, policy: Policy, tasks: int, clients: int, replicas: int) -> float:
    """Pairs per second; raises if any task was not decided exactly once."""
    engines = [make_engine(url) for _ in range(replicas)]
    try:
        fill(engines[0], policy, tasks)
        services = []
        for engine in engines:
            store = ItemStore(make_session_factory(engine))
            services.append(ReviewService(store.sessions, store, policy))
        claimed: dict[int, str] = {}
        guard = threading.Lock()

        def moderate(worker: int) -> None:
            service = services[worker % replicas]
            me = Principal(f"m{worker}", Role.MODERATOR)
            while (task := service.claim(me)) is not None:
                with guard:
                    if task.id in claimed:
                        raise AssertionError(f"task {task.id} claimed twice")
                    claimed[task.id] = me.name
                if task.id % 4:
                    service.decide(task.id, me, "approve")
                else:
                    service.decide(task.id, me, "reject", ["spam.scam"])

        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            for future in [pool.submit(moderate, w) for w in range(clients)]:
                future.result()
        elapsed = time.perf_counter() - start

        with engines[0].connect() as conn:
            decided = conn.execute(
                select(
                    moderation.review.tables.ReviewDecisionRow.task_id,
                    moderation.review.tables.ReviewDecisionRow.moderator,
                )
            ).all()
            still_open = conn.scalar(
                select(func.count()).where(moderation.review.tables.ReviewTaskRow.status == "open")
            )
        if len(decided) != tasks or dict(decided) != claimed or still_open:
            raise AssertionError("a task was not decided exactly once by its claimant")
        return tasks / elapsed
    finally:
        for engine in engines:
            engine.dispose()


@contextmanager
def sqlite_url() -> Iterator[Callable[[], str]]:
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(1_000_000))
        yield lambda: f"sqlite:///{Path(tmp) / f'bench{next(counter)}.db'}"


@contextmanager
def postgres_url(server: str) -> Iterator[Callable[[], str]]:
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def fresh() -> str:
        name = f"bench_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return server.rsplit("/", 1)[0] + "/" + name

    try:
        yield fresh
    finally:
        with admin.connect() as conn:
            for name in made:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def report(
    label: str,
    urls: Callable[[], str],
    policy: Policy,
    tasks: int,
    clients: int,
    extra: list[tuple[str, int, int]],
) -> None:
    baseline = run(urls(), policy, tasks, 1, 1)
    print(f"{label}: 1 moderator            {baseline:8.0f} claim+decide/s  (baseline)")
    for name, n_clients, replicas in [(f"{clients} moderators", clients, 1), *extra]:
        rate = run(urls(), policy, tasks, n_clients, replicas)
        print(f"{label}: {name:<22}{rate:8.0f} claim+decide/s  x{rate / baseline:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    policy = Policy.load()
    print(f"{args.tasks} tasks per run; every run checked: each task decided exactly once")
    with sqlite_url() as urls:
        report(
            "sqlite  ",
            urls,
            policy,
            args.tasks,
            args.clients,
            [
                (f"{args.clients} over 4 engines", args.clients, 4),
                ("32 moderators", 32, 1),
            ],
        )
    server = os.environ.get("REELSIFT_BENCH_POSTGRES_URL") or os.environ.get(
        "REELSIFT_TEST_POSTGRES_URL"
    )
    if not server:
        print(
            "postgres: skipped; set REELSIFT_BENCH_POSTGRES_URL to a server URL "
            "(scripts/start-test-postgres.sh starts one)"
        )
        return
    with postgres_url(server) as urls:
        report(
            "postgres",
            urls,
            policy,
            args.tasks,
            args.clients,
            [
                ("32 moderators", 32, 2),
            ],
        )


if __name__ == "__main__":
    main()

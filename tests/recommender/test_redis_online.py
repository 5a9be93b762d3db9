"""Two feed replicas over one database and one Redis (in process): profiles written by an
event worker, events posted to one replica shaping the other's next feed, takedowns
published to both. Runs on one redis-server and on a Redis Cluster (``redis_server`` in
tests/conftest.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from core.contracts import ItemState
from core.storage.db import make_session_factory
from core.storage.items import ItemStore
from recommender.service import Recommender
from recommender.stream.online import RedisOnline
from recommender.stream.profiles import RedisProfiles
from recommender.stream.worker import open_worker
from tests.waiting import wait_until


@pytest.fixture
def online(redis_server, redis_namespace) -> Iterator[list[RedisOnline]]:
    opened: list[RedisOnline] = []
    yield opened
    for one in opened:
        one.close()
    cleanup = redis_server.connect()
    keys = list(cleanup.scan_iter(f"{redis_namespace}:*", count=1000))
    if keys:
        cleanup.delete(*keys)
    cleanup.close()


def _event(n, user, item, kind="complete", ts=None, **extra):
    return {"event_id": f"ev-{n}", "user_id": user, "item_id": item, "type": kind,
            "ts": ts, **extra}


def test_an_event_posted_to_one_replica_shapes_the_others_next_feed(
        sqlite_engine, small_world, clock, tmp_path, h, online, redis_server, redis_namespace,
        monkeypatch):
    sessions = make_session_factory(sqlite_engine)
    small_world.write_to_db(sessions)
    replicas = []
    for name in ("a", "b"):
        connection = RedisOnline.connect(redis_server.url, namespace=redis_namespace,
                                         partitions=4, cluster=redis_server.cluster)
        online.append(connection)
        store = ItemStore(sessions)
        settings = h.make_settings(tmp_path / name, multi_process=True)
        replicas.append((Recommender.open(sessions, settings, store, clock=clock,
                                          online=connection), store))
    (a, store_a), (b, _) = replicas
    worker = open_worker(sessions, h.make_settings(tmp_path / "w"), online[0].client,
                         online[0].layout, name="w1")
    assert isinstance(b.state.profiles, RedisProfiles)

    before = b.feed.feed("u1", 10)
    assert before.cold_start
    target = small_world.items[0].category
    liked = [i for i in small_world.items if i.category == target][:4]
    batch = [_event(n, "u1", i.id, watch_ms=i.duration_ms, item_duration_ms=i.duration_ms,
                    ts=(clock.dt - timedelta(minutes=10 - n)).isoformat())
             for n, i in enumerate(liked)]
    first = a.events.ingest([*batch, batch[0]])
    assert (first.received, first.stored, first.duplicates) == (5, 4, 1)
    assert a.events.ingest(batch).duplicates == 4  # posted again, to either replica
    assert b.events.ingest(batch).duplicates == 4
    while worker.stats.applied < 4:
        worker.step()

    # One feed request asks Redis one thing, the user's profile (one GET, one key: one
    # slot on a cluster); b's stream-follower thread issues its own reads, not counted.
    feed_thread, asked = threading.get_ident(), []
    issue = online[1].client.execute_command

    def counted(*args, **options):
        if threading.get_ident() == feed_thread:
            asked.append(args[0])
        return issue(*args, **options)

    monkeypatch.setattr(online[1].client, "execute_command", counted)
    after = b.feed.feed("u1", 10)
    monkeypatch.setattr(online[1].client, "execute_command", issue)
    assert asked == ["GET"]
    assert not after.cold_start
    assert not {i.id for i in liked} & {i.item_id for i in after.items}  # seen: never again
    shown = [small_world.by_id[i.item_id].category for i in after.items]
    assert sum(c == target for c in shown) >= 3 > sum(
        small_world.by_id[i.item_id].category == target for i in before.items)
    # b folds the events into its item counters from the stream (on its own thread), once
    wait_until(lambda: (c := b.state.stats.get(liked[1].id)) is not None and c.views >= 1,
               "replica b never folded the streamed events")
    time.sleep(0.1)
    assert b.state.stats.get(liked[1].id).views == 1
    # and the co-visitation pairs the worker counted from u1's session
    wait_until(lambda: b.state.covisitation.neighbours_of(liked[0].id, 10),
               "co-visitation never reached replica b")
    assert {i for i, _ in b.state.covisitation.neighbours_of(liked[0].id, 10)} == {
        i.id for i in liked[1:]}
    # neither replica holds profiles: the worker's copy in Redis is the only one
    assert a.state.profiles.get("u1").n_events == 4 and len(b.state.profiles) == 0

    # A takedown through a: b's catalog drops it when the message arrives (no poll,
    # no feed request needed).
    victim = next(i.item_id for i in b.feed.feed("u2", 10).items)
    store_a.transition(victim, ItemState.PENDING_REVIEW, "reported")
    wait_until(lambda: victim not in b.catalog, "the takedown never reached replica b")
    assert victim not in {i.item_id for i in b.feed.feed("u2", 10).items}
    a.close()
    b.close()

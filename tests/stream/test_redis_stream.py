"""The Redis event stream and profile store against a real redis-server.

Each test runs twice: on one redis-server (``REELSIFT_TEST_REDIS_URL``,
``scripts/start-test-redis.sh``) and on a Redis Cluster of three masters
(``REELSIFT_TEST_REDIS_CLUSTER_URL``, ``scripts/start-test-redis-cluster.sh``), where a
command or script naming keys of two slots fails with CROSSSLOT. Skipped without them
unless ``REELSIFT_REQUIRE_REDIS=1``. Each test works in its own key namespace.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import redis
from sqlalchemy import func, select

from core.contracts import Event
from core.storage.db import make_session_factory
from recommender.catalog import Catalog, CatalogItem
from recommender.settings import RecommenderSettings
from recommender.state import OnlineState
from recommender.stream.codec import decode_profile, encode_profile
from recommender.stream.connection import RedisClient
from recommender.stream.layout import GROUP, StreamLayout
from recommender.stream.log import RedisEventLog
from recommender.stream.profiles import RedisProfiles
from recommender.stream.worker import EventWorker, PairRecorder
from recommender.tables import EventRow
from tests.waiting import wait_until

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DIM = 4


def make_state(tmp_path, n_items: int = 40) -> OnlineState:
    settings = RecommenderSettings(index_dir=tmp_path / "index", model_dir=tmp_path / "model",
                                   background_refits=False)
    catalog = Catalog(settings, DIM, "test@1")
    rng = np.random.default_rng(3)
    for n in range(n_items):
        vector = rng.normal(size=DIM).astype(np.float32)
        catalog.add(CatalogItem(f"i{n}", f"c{n % 5}", T0.timestamp() - 3600,
                                tags=(f"t{n % 7}",), categories=((f"cat{n % 3}", 0.9),)),
                    vector / np.linalg.norm(vector))
    return OnlineState.create(settings, catalog, clock=lambda: T0.timestamp())


def make_events(n: int, users: int = 20, prefix: str = "e") -> list[Event]:
    kinds = ["view", "complete", "like", "skip", "impression", "hide", "share"]
    return [
        Event(event_id=f"{prefix}{k}", user_id=f"u{k % users}", item_id=f"i{(k * 7) % 40}",
              type=kinds[k % len(kinds)], ts=T0 + timedelta(seconds=k),  # type: ignore[arg-type]
              watch_ms=8000 if kinds[k % len(kinds)] == "view" else None,
              item_duration_ms=10_000)
        for k in range(n)
    ]


@pytest.fixture
def client(redis_server, redis_namespace: str) -> Iterator[RedisClient]:
    connection = redis_server.connect()
    yield connection
    # (scan_iter visits every node of a cluster; DEL splits its keys by slot there)
    keys = list(connection.scan_iter(f"{redis_namespace}:*", count=1000))
    for start in range(0, len(keys), 500):
        connection.delete(*keys[start:start + 500])
    connection.close()


def drain(workers: list[EventWorker], until: int, timeout_s: float = 60) -> None:
    """Step the workers until they applied ``until`` events between them."""
    deadline = time.monotonic() + timeout_s
    while sum(w.stats.applied for w in workers) < until:
        assert time.monotonic() < deadline, [w.stats for w in workers]
        if not sum(w.step() for w in workers):
            time.sleep(0.02)


def test_a_profile_survives_the_codec(tmp_path):
    state = make_state(tmp_path)
    for event in make_events(60, users=1):
        state.apply(event)
    profile = state.profiles.get("u0")
    assert profile is not None and profile.vector is not None
    again = decode_profile(encode_profile(profile), "u0", profile.half_life_s,
                           state.settings.profile.recent_positives)
    now = T0.timestamp() + 100
    for name in ("tags", "categories", "creators"):
        assert getattr(again, name).snapshot(now) == getattr(profile, name).snapshot(now)
    np.testing.assert_array_equal(again.vector, profile.vector)
    assert again.seen == profile.seen and again.blocked == profile.blocked
    assert list(again.recent_positives) == list(profile.recent_positives)
    assert again.recent_positives.maxlen == profile.recent_positives.maxlen
    assert (again.session_items, again.n_events, again.n_positives, again.last_ts) == (
        profile.session_items, profile.n_events, profile.n_positives, profile.last_ts)


def test_the_worker_builds_the_profiles_the_embedded_path_builds(
        tmp_path, client, redis_namespace):
    events = make_events(300)
    embedded = make_state(tmp_path / "a")
    for event in events:
        embedded.apply(event)

    layout = StreamLayout(redis_namespace, partitions=4)
    api = RedisEventLog(client, layout, None, None)  # type: ignore[arg-type]
    assert api.ingest(events).stored == 300
    worker_state = make_state(tmp_path / "b")
    worker_state.covisitation = PairRecorder(worker_state.settings.covisitation_window,
                                             worker_state.settings.covisitation_neighbours)
    item_log = RedisEventLog(client, layout, None, worker_state,  # type: ignore[arg-type]
                             counters_only=True)
    worker = EventWorker(client, layout, worker_state, name="w1", item_log=item_log)
    # The item counters the weights read must be those before each event, as embedded:
    # apply the profile half of everything first, then fold the counters in.
    worker.rebalance()
    worker.process(worker.read_new())
    assert worker.stats.applied == 300
    item_log.catch_up()

    redis_profiles = RedisProfiles(client, layout, worker_state.settings.profile)
    now = T0.timestamp() + 400
    for user in {e.user_id for e in events}:
        mine, theirs = redis_profiles.get(user), embedded.profiles.get(user)
        assert mine is not None and theirs is not None
        assert (mine.n_events, mine.seen, mine.blocked) == (
            theirs.n_events, theirs.seen, theirs.blocked)
        assert mine.tags.snapshot(now).keys() == theirs.tags.snapshot(now).keys()
    # A replica folds the item half and the co-visitation pairs the worker counted.
    replica = make_state(tmp_path / "c")
    RedisEventLog(client, layout, None, replica).catch_up()  # type: ignore[arg-type]
    assert len(embedded.covisitation) > 10
    for n in range(40):
        assert replica.covisitation.neighbours_of(f"i{n}", 100) == \
            embedded.covisitation.neighbours_of(f"i{n}", 100)
    # the item half, folded from the stream, counts as the embedded path counts
    np.testing.assert_allclose(
        worker_state.stats.table([f"i{n}" for n in range(40)])[:, [0, 3, 4, 5]],
        embedded.stats.table([f"i{n}" for n in range(40)])[:, [0, 3, 4, 5]])


def test_the_same_event_twice_is_applied_once(tmp_path, client, redis_namespace, sqlite_engine):
    layout = StreamLayout(redis_namespace, partitions=2)
    sessions = make_session_factory(sqlite_engine)
    api = RedisEventLog(client, layout, sessions, None)
    events = make_events(50)
    first, again = api.ingest(events), api.ingest(events[:20] + make_events(5, prefix="n"))
    assert (first.stored, first.duplicates) == (50, 0)
    assert (again.stored, again.duplicates) == (5, 20)
    # An entry streamed twice (a retry after the dedup window, a replayed stream):
    # appended behind the marker's back, it must still be applied once.
    twin = events[0]
    client.xadd(layout.stream(layout.partition_of(twin.user_id)),
                {"e": twin.model_dump_json()})
    worker = EventWorker(client, layout, make_state(tmp_path), name="w1", sessions=sessions)
    drain([worker], until=55)
    for _ in range(3):
        worker.step()
    assert worker.stats.applied == 55 and worker.stats.duplicates == 1
    profiles = RedisProfiles(client, layout, worker.state.settings.profile)
    per_user = Counter(e.user_id for e in events + make_events(5, prefix="n"))
    for user, n in per_user.items():
        profile = profiles.get(user)
        assert profile is not None and profile.n_events == n
    with sessions() as session:  # the database log holds each event once
        assert session.scalar(select(func.count()).select_from(EventRow)) == 55
    for p in range(layout.partitions):
        assert client.xpending(layout.stream(p), GROUP)["pending"] == 0


def test_a_dead_workers_pending_entries_are_claimed_by_another(tmp_path, client,
                                                                redis_namespace):
    layout = StreamLayout(redis_namespace, partitions=3)
    api = RedisEventLog(client, layout, None, None)  # type: ignore[arg-type]
    events = make_events(400)
    api.ingest(events)
    doomed = EventWorker(client, layout, make_state(tmp_path / "a"), name="doomed",
                         lease_ms=400, batch=1000)
    doomed.rebalance()
    assert doomed.owned == {0, 1, 2}
    read = doomed.read_new()  # read, never acknowledged: the process dies here
    assert len(read) == 400
    pending = sum(client.xpending(layout.stream(p), GROUP)["pending"] for p in range(3))
    assert pending == 400

    # The heir's own lease is long: on a loaded machine a step can outlast 400 ms, and a
    # lease lost between its commit and its renewal would drop a partition (or have it
    # claimed twice) after the work under test is done.
    heir = EventWorker(client, layout, make_state(tmp_path / "b"), name="heir", lease_ms=3000)
    drain([heir], until=400, timeout_s=30)
    assert heir.owned == {0, 1, 2} and heir.stats.claimed == 400
    assert all(client.xpending(layout.stream(p), GROUP)["pending"] == 0 for p in range(3))
    profiles = RedisProfiles(client, layout, heir.state.settings.profile)
    for user, n in Counter(e.user_id for e in events).items():
        profile = profiles.get(user)
        assert profile is not None and profile.n_events == n

    # The dead worker wakes up (a paused process): its lease is gone, its commit refused.
    assert doomed.process(read) == 0 and doomed.stats.lost_commits >= 1
    profile = profiles.get("u0")
    assert profile is not None and profile.n_events == 20


def test_two_workers_split_the_partitions_and_apply_every_event_once(
        tmp_path, client, redis_namespace):
    layout = StreamLayout(redis_namespace, partitions=8)
    api = RedisEventLog(client, layout, None, None)  # type: ignore[arg-type]
    # Leases of 2 s, not less: on a loaded CI machine one step of 200 events has outlasted
    # a 600 ms lease, leaving a partition briefly unowned when the test looked.
    workers = [EventWorker(client, layout, make_state(tmp_path / name), name=name,
                           lease_ms=2000, batch=200) for name in ("w1", "w2")]

    def owners() -> set[bytes | None]:
        return {client.get(layout.owner(p)) for p in range(layout.partitions)}

    stop = threading.Event()
    threads = [threading.Thread(target=w.run, args=(stop,), daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    try:
        # the split is under test, not start-up order: on a loaded machine the first
        # worker can take every partition and drain 3,000 events before the second runs
        wait_until(lambda: owners() == {b"w1", b"w2"},
                   "the two workers never shared the partitions", timeout_s=60)
        events = make_events(3000, users=97)
        for start in range(0, len(events), 250):
            api.ingest(events[start:start + 250])
        wait_until(lambda: sum(w.stats.applied for w in workers) >= 3000,
                   lambda: f"not every event applied: {[w.stats for w in workers]}",
                   timeout_s=60)
        # both took part; every partition has one owner, one of the two (a lease that lapsed
        # under load is taken again at the next rebalance, so this is waited for; a worker's
        # own view may lag a lost lease: its commits are refused then, see the dead-worker
        # test)
        assert all(w.stats.applied > 0 for w in workers)
        wait_until(lambda: None not in owners(), "a partition stayed without an owner")
        assert owners() <= {b"w1", b"w2"}
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert sum(w.stats.applied for w in workers) == 3000
    profiles = RedisProfiles(client, layout, workers[0].state.settings.profile)
    for user, n in Counter(e.user_id for e in events).items():
        profile = profiles.get(user)
        assert profile is not None and profile.n_events == n, user


def test_cohorts_fitted_by_a_worker_over_every_profile_reach_a_replica(
        tmp_path, client, redis_namespace):
    layout = StreamLayout(redis_namespace, partitions=4)
    events = make_events(800, users=40)
    RedisEventLog(client, layout, None, None).ingest(events)  # type: ignore[arg-type]
    worker = EventWorker(client, layout, make_state(tmp_path / "w"), name="w1")
    drain([worker], until=800)
    assert 0 in worker.owned and worker.fit_cohorts()

    # the fit the embedded path makes: as many cohorts, over as many users (not the same
    # clusters: users come in another order and weights read other counters)
    embedded = make_state(tmp_path / "e")
    for event in events:
        embedded.apply(event)
    embedded.cohorts.refresh(embedded.profiles, embedded.now())

    replica = make_state(tmp_path / "r")
    assert not replica.cohorts.ready
    RedisEventLog(client, layout, None, replica).catch_up()  # type: ignore[arg-type]
    assert replica.cohorts.ready
    assert replica.cohorts.sizes is not None and embedded.cohorts.sizes is not None
    assert len(replica.cohorts.sizes) == len(embedded.cohorts.sizes)
    assert replica.cohorts.sizes.sum() == embedded.cohorts.sizes.sum() == 40
    profile = RedisProfiles(client, layout, replica.settings.profile).get("u3")
    cohort = replica.cohorts.cohort_of(profile)
    assert cohort is not None and replica.cohorts.top(cohort, 5)


def test_import_events_appends_to_the_stream_once(tmp_path, client, redis_server,
                                                   redis_namespace, sqlite_engine):
    from typer.testing import CliRunner

    from recommender.cli import app

    events = make_events(120)
    path = tmp_path / "events.jsonl"
    path.write_text("".join(e.model_dump_json() + "\n" for e in events))
    url = str(sqlite_engine.url)
    args = ["import-events", str(path), "--db-url", url, "--batch-size", "50",
            "--redis-url", redis_server.url,
            "--redis-namespace", redis_namespace, "--stream-partitions", "4"]
    if redis_server.cluster:
        args.append("--redis-cluster")
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert json.loads(first.output.strip().splitlines()[-1]) == {
        "read": 120, "stored": 120, "duplicates": 0}
    again = CliRunner().invoke(app, args)
    assert json.loads(again.output.strip().splitlines()[-1])["duplicates"] == 120
    layout = StreamLayout(redis_namespace, partitions=4)
    worker = EventWorker(client, layout, make_state(tmp_path), name="w1",
                         sessions=make_session_factory(sqlite_engine))
    drain([worker], until=120)
    with make_session_factory(sqlite_engine)() as session:  # archived by the worker
        assert session.scalar(select(func.count()).select_from(EventRow)) == 120


def test_redis_out_of_reach_is_a_503_not_a_500(tmp_path, client, redis_namespace):
    from core.errors import ServiceUnavailable
    from serving.launcher import free_port

    layout = StreamLayout(redis_namespace, partitions=2)
    log = RedisEventLog(client, layout, None, None)  # type: ignore[arg-type]
    gone = redis.Redis(port=free_port(), socket_connect_timeout=0.5)  # nothing listens
    log.client = gone
    with pytest.raises(ServiceUnavailable, match="Redis is briefly unavailable") as raised:
        log.ingest(make_events(3))
    assert raised.value.status == 503 and raised.value.retry_after_s > 0
    profiles = RedisProfiles(gone, layout, make_state(tmp_path).settings.profile)
    with pytest.raises(ServiceUnavailable):
        profiles.get("u1")


def test_a_replica_reuses_a_decoded_profile_only_while_its_bytes_are_the_same(
        tmp_path, client, redis_namespace):
    layout = StreamLayout(redis_namespace, partitions=2)
    state = make_state(tmp_path)
    events = make_events(5, users=1)
    user = events[0].user_id
    for event in events:
        state.apply(event)
    profile = state.profiles.get(user)
    assert profile is not None
    client.set(layout.profile(user), encode_profile(profile))
    profiles = RedisProfiles(client, layout, state.settings.profile, decoded_kept=1)
    first = profiles.get(user)
    assert first is not None and first.n_events == 5 and profiles.get(user) is first
    later = make_events(1, users=1, prefix="later")[0]
    assert later.user_id == user
    state.apply(later)  # as a worker would, then it writes the profile anew
    client.set(layout.profile(user), encode_profile(profile))
    changed = profiles.get(user)
    assert changed is not None and changed is not first and changed.n_events == 6
    client.set(layout.profile("other"), encode_profile(profile))
    assert profiles.get("other") is not None  # evicts the first: one decoded profile kept
    assert profiles.get(user) is not changed


# One server routes nothing: only the cluster is asked.
@pytest.mark.parametrize("redis_server", ["redis-cluster"], indirect=True)
def test_on_a_cluster_no_command_costs_a_round_trip_to_find_its_keys(
        tmp_path, client, redis_server, redis_namespace):
    """redis-py asks a server for the keys of a command whose keys it cannot place
    (EVAL, XREAD, XREADGROUP: COMMAND GETKEYS, a round trip before each command); the
    stream code routes every one by its keys itself (``recommender.stream.connection``)."""
    assert redis_server.cluster

    def keys_asked() -> int:
        stats = client.info("commandstats", target_nodes=client.ALL_NODES)
        return sum(node.get("cmdstat_command|getkeys", {}).get("calls", 0)
                   for node in stats.values())

    layout = StreamLayout(redis_namespace, partitions=4)
    worker = EventWorker(client, layout, make_state(tmp_path / "w"), name="w1")
    before = keys_asked()
    RedisEventLog(client, layout, None, None).ingest(make_events(200))  # type: ignore[arg-type]
    drain([worker], until=200)
    replica = make_state(tmp_path / "r")
    assert RedisEventLog(client, layout, None, replica).catch_up() >= 200  # type: ignore[arg-type]
    assert RedisProfiles(client, layout, replica.settings.profile).get("u1") is not None
    assert keys_asked() == before


@pytest.mark.parametrize("fault", [
    redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down"),
    redis.exceptions.TryAgainError("TRYAGAIN Multiple keys request during rehashing"),
    redis.exceptions.SlotNotCoveredError("slot 4242 is not covered"),
])
def test_a_cluster_in_failover_is_a_503_not_a_500(fault):
    from core.errors import ServiceUnavailable
    from recommender.stream.faults import redis_faults

    with pytest.raises(ServiceUnavailable) as raised, redis_faults("reading a profile"):
        raise fault
    assert raised.value.status == 503 and raised.value.retry_after_s > 0
    # a key naming bug is not a passing fault
    crossslot = redis.exceptions.ClusterCrossSlotError("CROSSSLOT")
    with pytest.raises(redis.exceptions.ClusterCrossSlotError), redis_faults("reading"):
        raise crossslot


def test_the_settings_pick_the_client_and_a_worker_applies_events_through_it(
        tmp_path, client, redis_server, redis_namespace):
    """REELSIFT_REDIS_CLUSTER through the wiring the server and `reelsift worker events`
    use: the client it builds, events appended by the API's log and applied once."""
    from redis.cluster import RedisCluster

    from serving.settings import Settings
    from serving.stream_wiring import build_event_worker, redis_online

    settings = Settings(data_dir=tmp_path / "var", redis_url=redis_server.url,
                        redis_cluster=redis_server.cluster, redis_namespace=redis_namespace,
                        stream_partitions=4)
    online = redis_online(settings)
    assert online is not None
    assert isinstance(online.client, RedisCluster) is redis_server.cluster
    worker = build_event_worker(settings, name="w1")
    try:
        assert isinstance(worker.client, RedisCluster) is redis_server.cluster
        events = make_events(60)
        result = online.event_log(None, None).ingest(events)  # type: ignore[arg-type]
        assert result.stored == 60
        drain([worker], until=60)
        profiles = RedisProfiles(online.client, online.layout, worker.state.settings.profile)
        for user, n in Counter(e.user_id for e in events).items():
            profile = profiles.get(user)
            assert profile is not None and profile.n_events == n
    finally:
        worker.release_all()
        worker.client.close()
        online.close()

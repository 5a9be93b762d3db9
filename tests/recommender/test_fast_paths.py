"""The array paths that keep the feed fast give the same answers as the plain definitions.

Each test computes the documented quantity the slow, obvious way (a loop over items,
a scan over every counter, an exact search) and compares.
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest

import recommender.popularity as popularity
from recommender.catalog import Catalog, CatalogItem
from recommender.channels import Matcher, MatchRequest, TagCategoryChannel, default_channels
from recommender.features import DENSE_FEATURES, FRESHNESS_SECONDS, build_features, category_bucket
from recommender.popularity import ItemStats, decay_factor
from recommender.vector_index import VectorIndex
from tests.waiting import wait_until


def _world(h, clock, tmp_path, n=3000, dim=8, **overrides):
    """More items than the columns' first capacity, so they grow; some without vectors."""
    rng = np.random.default_rng(4)
    settings = h.make_settings(tmp_path, **overrides)
    items = []
    for i in range(n):
        created = (h.T0 - timedelta(hours=int(rng.integers(0, 400)))).timestamp()
        tags = tuple(f"t{t}" for t in rng.choice(12, size=int(rng.integers(0, 4)), replace=False))
        cats = tuple((f"k{c}", round(float(rng.uniform(0.3, 1.0)), 3))
                     for c in rng.choice(6, size=int(rng.integers(0, 3)), replace=False))
        item = CatalogItem(f"i{i}", f"c{i % 40}", created, tags=tags, categories=cats)
        vec = rng.normal(size=dim).astype(np.float32) if i % 10 else None
        items.append((item, vec))
    state = h.memory_state(items, settings, clock, dim=dim)
    kinds = ["like", "view", "complete", "skip", "impression", "follow", "hide"]
    for e in range(400):
        user = f"u{e % 5}"
        item = f"i{int(rng.integers(0, n))}"
        ts = h.T0 - timedelta(minutes=int(rng.integers(1, 5000)))
        state.apply(h.ev(user, item, kinds[e % len(kinds)], ts, watch_ms=int(rng.integers(0, 9000)),
                         item_duration_ms=8000))
    return state


def _reference_row(state, profile, item_id, proposed, now):
    """One item's dense features exactly as the feature layout documents them."""
    row = np.zeros(len(DENSE_FEATURES))
    item = state.catalog.get(item_id)
    counters = state.stats.get(item_id)
    user_vec = profile.vector if profile is not None else None
    item_vec = state.catalog.index.vector(item_id)
    if user_vec is not None and item_vec is not None:
        row[0] = float(item_vec @ user_vec)
    if item is not None:
        if profile is not None:
            as_of = profile.as_of(now)  # interests are read as of the user's last event
            tags, cats = profile.tags.snapshot(as_of), profile.categories.snapshot(as_of)
            creators = profile.creators.snapshot(as_of)
            row[1] = math.tanh(sum(tags.get(t, 0.0) for t in item.tags) / 2.0)
            row[2] = math.tanh(sum(c * cats.get(k, 0.0) for k, c in item.categories) / 2.0)
            row[3] = math.tanh(creators.get(item.creator_id, 0.0) / 2.0)
            row[4] = float(item.creator_id in profile.followed)
        age = now - item.created_at  # an item dated after the clock is not fresh
        row[7] = math.exp(-age / FRESHNESS_SECONDS) if age >= 0 else 0.0
    if counters is not None:
        row[5] = math.log1p(counters.positives)
        row[6] = math.log1p(state.stats.trending_score(item_id, now))
        row[8] = counters.bounce_rate
        row[9] = counters.completion_rate
    row[14] = len(proposed)
    for name in proposed:
        row[DENSE_FEATURES.index(f"channel_{name}")] = 1.0
    return row, (category_bucket(item.top_category) if item is not None else 0)


def test_features_as_arrays_match_the_per_item_definitions(h, clock, tmp_path):
    state = _world(h, clock, tmp_path)
    catalog = state.catalog
    for n in range(0, 3000, 7):  # takedowns leave dead rows behind, then a rebuild
        catalog.remove(f"i{n}")
    assert catalog.columns.dead < 1024 + 7
    catalog.add(CatalogItem("late", "c1", clock() - 60, tags=("t1", "fresh-tag"),
                            categories=(("k9", 0.5),)))
    now = clock()
    ids = [f"i{n}" for n in range(0, 3000, 3)] + ["late", "never-existed"]
    names = ("embedding", "trending", "fresh")
    rng = np.random.default_rng(0)
    scores = np.where(rng.random((len(ids), 3)) < 0.4, rng.random((len(ids), 3)), 0.0)
    for user in ["u0", "u3", "nobody"]:
        profile = state.profiles.get(user)
        batch = build_features(state, profile, ids, scores, {"device": "tv"}, now,
                               channel_names=names)
        for r, item_id in enumerate(ids):
            proposed = {names[c]: scores[r, c] for c in range(3) if scores[r, c] > 0}
            row, bucket = _reference_row(state, profile, item_id, proposed, now)
            np.testing.assert_allclose(batch.dense[r, :10], row[:10], rtol=1e-6, atol=1e-7)
            np.testing.assert_array_equal(batch.dense[r, 14:], row[14:])
            assert batch.categorical[r, 2] == bucket
            assert batch.channel_best[r] == pytest.approx(max(proposed.values(), default=0.0))
        # the per-candidate dict form (training rows) agrees with the matrix form
        dicts = [{names[c]: scores[r, c] for c in range(3) if scores[r, c] > 0}
                 for r in range(len(ids))]
        again = build_features(state, profile, ids, dicts, {"device": "tv"}, now)
        np.testing.assert_array_equal(again.dense, batch.dense)


def test_trending_leaders_equal_a_full_scan(monkeypatch):
    monkeypatch.setattr(popularity, "TRENDING_KEPT", 5)  # prune often
    stats = ItemStats(trending_half_life_hours=1.0)
    rng = np.random.default_rng(3)
    t0 = 1_700_000_000.0
    for _ in range(600):
        ts = t0 + float(rng.uniform(0, 7200))  # out of order on purpose
        stats.record(f"i{int(rng.integers(0, 60))}", ts, positive_weight=float(rng.uniform(0, 2)))
    now = t0 + 9000
    scan = sorted(((i, c.trending * decay_factor(now - c.trending_ts, stats.half_life_s))
                   for i, c in stats._items.items() if c.trending > 0),
                  key=lambda kv: kv[1], reverse=True)
    top = stats.top_trending(4, now)
    assert [i for i, _ in top] == [i for i, _ in scan[:4]]
    assert [s for _, s in top] == pytest.approx([s for _, s in scan[:4]], rel=1e-9)
    skip = {i for i, _ in scan[:3]}
    assert [i for i, _ in stats.top_trending(20, now, skip=skip)] == [
        i for i, _ in scan if i not in skip][:20]  # past the 5 kept: falls back to a scan


def test_ivf_index_for_large_catalogs_searches_removes_and_persists(tmp_path):
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(20, 16))
    vectors = (centres[rng.integers(0, 20, 3000)] + 0.3 * rng.normal(size=(3000, 16)))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    ids = [f"i{n}" for n in range(3000)]
    index = VectorIndex(16, "m@1", exact_below=100, ivf_above=2000, nprobe=8,
                        rebuild_fraction=0.3)
    index.add(ids[:1500], vectors[:1500])
    assert index.kind == "hnsw"
    index.add(ids[1500:], vectors[1500:])  # grown online: stays HNSW
    assert index.kind == "hnsw"
    bulk = VectorIndex(16, "m@1", exact_below=100, ivf_above=2000, nprobe=8,
                       rebuild_fraction=0.3)
    bulk.add(ids, vectors)  # built at once: IVF for this size
    assert bulk.kind == "ivf" and len(bulk) == 3000
    exact = vectors @ vectors[5]
    truth = [ids[r] for r in np.argsort(-exact)[:20]]
    got = [i for i, _ in bulk.search(vectors[5], 20)]
    assert len(set(got) & set(truth)) >= 18
    found, rebuilt = bulk.vectors(["i9", "missing", "i7"])
    assert found == ["i9", "i7"]
    np.testing.assert_allclose(rebuilt, vectors[[9, 7]], atol=1e-6)

    unseen = [i for i, _ in bulk.search(vectors[5], 20, exclude=set(truth[:10]))]
    assert len(unseen) == 20 and not set(unseen) & set(truth[:10])
    assert bulk.remove("i5") and "i5" not in {i for i, _ in bulk.search(vectors[5], 5)}

    bulk.save(tmp_path)
    options = {"exact_below": 100, "ivf_above": 2000, "nprobe": 8, "rebuild_fraction": 0.5}
    loaded = VectorIndex.load(tmp_path, **options)
    assert loaded.kind == "ivf" and len(loaded) == 2999
    assert loaded.search(vectors[6], 1)[0][0] == "i6"
    for n in range(100, 1700):  # half removed: compacted, and rebuilt for its new size
        loaded.remove(ids[n])
    assert loaded.rows < 2999 and len(loaded) == 1399 and loaded.kind == "hnsw"
    assert loaded.search(vectors[2000], 1)[0][0] == "i2000"


def test_channels_skip_what_the_request_excludes_without_losing_their_quota(h, clock, tmp_path):
    state = _world(h, clock, tmp_path, n=1200, cohort_min_users=2)
    profile = state.profiles.get("u1")
    request = MatchRequest("u1", profile, clock(), set())
    tags = TagCategoryChannel(state.catalog).match(request, 40)
    seen = {i for i, _ in tags[:30]}
    again = TagCategoryChannel(state.catalog).match(
        MatchRequest("u1", profile, clock(), seen | profile.excluded()), 40)
    assert len(again) == len(tags) and not seen & {i for i, _ in again}

    matcher = Matcher(default_channels(state.settings, state.catalog, state.stats,
                                       state.covisitation, state.cohorts),
                      state.settings, state.catalog)
    blocked = profile.excluded() | seen
    found = matcher.candidates(MatchRequest("u1", profile, clock(), blocked))
    assert found.item_ids and not blocked & set(found.item_ids)
    assert all(i in state.catalog for i in found.item_ids)
    weights = np.asarray([max(state.settings.weights.channels.get(n, 0.0), 0.05)
                          for n in found.channels])
    assert found.rank_scores is not None
    best = found.rank_scores @ weights
    assert np.all(np.diff(best) <= 1e-12)  # ranked as the matcher documents
    # a channel's r-th proposal (0-based) earns 1 / (1 + r / rank_constant)
    column = found.rank_scores[:, found.channels.index("tag_category")]
    earned = np.sort(column[column > 0])[::-1]
    expected = 1.0 / (1.0 + np.arange(len(earned)) / state.settings.weights.rank_constant)
    np.testing.assert_allclose(earned, expected[: len(earned)])
    embedding = found.channels.index("embedding")
    hits = [i for r, i in enumerate(found.item_ids) if found.scores[r, embedding] > 0]
    assert len(hits) == state.settings.quotas.embedding  # the quota, after exclusions


def test_catalog_load_builds_the_index_once_of_the_final_kind(
        sqlite_engine, clock, open_recommender):
    from core.storage.db import make_session_factory
    from recommender.simulation import SyntheticWorld

    world = SyntheticWorld(n_items=600, n_categories=6, dim=16, seed=9,
                           start=clock.dt - timedelta(hours=30), hours=24)
    world.write_to_db(make_session_factory(sqlite_engine))
    rec, _ = open_recommender(sqlite_engine, clock, exact_index_below=100, ivf_index_above=500)
    assert rec.catalog.index.kind == "ivf" and len(rec.catalog.index) == 600
    item = world.items[42]
    assert rec.catalog.index.search(item.vector, 1)[0][0] == item.id
    assert rec.feed.feed("someone", 10).items


def test_catalog_columns_follow_re_adds(h, clock, tmp_path):
    settings = h.make_settings(tmp_path)
    catalog = Catalog(settings, 4, "m@1")
    catalog.add(CatalogItem("a", "c1", 10.0, tags=("x",)))
    catalog.add(CatalogItem("a", "c2", 20.0, tags=("y", "z")))  # changed: new row
    columns = catalog.columns
    slot = int(columns.slots(["a"])[0])
    assert columns.created[slot] == 20.0
    assert columns.vocab.strings[columns.creator[slot]] == "c2"
    codes = columns.tag_codes[columns.tag_ptr[slot]:columns.tag_ptr[slot + 1]]
    assert [columns.vocab.strings[c] for c in codes] == ["y", "z"]
    assert columns.slots(["gone"])[0] == 0 and columns.dead == 1
    for n in range(1100):  # replaced rows are garbage, dropped once they pile up
        catalog.add(CatalogItem("a", f"c{n}", 30.0, tags=("x",)))
    assert catalog.columns.dead < 1024
    assert catalog.columns.vocab.strings[catalog.columns.creator[
        int(catalog.columns.slots(["a"])[0])]] == "c1099"


def test_a_second_worker_follows_takedowns_approvals_and_events(
        db_engine, small_world, clock, open_recommender, tmp_path):
    """Two processes on one database: what one does reaches the other's feed on sync."""
    from core.contracts import ItemState
    from core.storage.db import make_session_factory

    sessions = make_session_factory(db_engine)
    small_world.write_to_db(sessions)
    held = small_world.items[-1]  # the newest: every fresh feed proposes it
    first, store = open_recommender(db_engine, clock, index_dir=tmp_path / "a")
    store.transition(held.id, ItemState.PENDING_REVIEW)
    second, _ = open_recommender(db_engine, clock, index_dir=tmp_path / "b")
    assert held.id not in second.catalog

    store.transition(held.id, ItemState.APPROVED)  # heard by the first worker only
    assert held.id in first.catalog and held.id not in second.catalog
    assert second.sync()[0] >= 1
    assert held.id in second.catalog and held.id in second.catalog.index
    assert held.id in {i.item_id for i in second.feed.feed("anyone", 50).items}

    store.transition(held.id, ItemState.REMOVED)
    second.sync()
    assert held.id not in second.catalog and held.id not in second.catalog.index
    assert held.id not in {i.item_id for i in second.feed.feed("anyone", 50).items}
    assert second.sync() == (0, 0)  # nothing new: nothing applied twice

    liked = small_world.items[3].id
    first.events.ingest([{"event_id": "w1", "user_id": "fan", "item_id": liked,
                          "type": "like", "ts": clock.dt}])
    assert second.state.profiles.get("fan") is None
    assert second.sync()[1] == 1
    assert liked in second.state.profiles.get("fan").seen


def test_following_on_a_timer_applies_changes_without_a_call(
        sqlite_engine, small_world, clock, open_recommender, tmp_path):
    from core.contracts import ItemState
    from core.storage.db import make_session_factory

    small_world.write_to_db(make_session_factory(sqlite_engine))
    _, store = open_recommender(sqlite_engine, clock, index_dir=tmp_path / "a")
    follower, _ = open_recommender(sqlite_engine, clock, index_dir=tmp_path / "b",
                                   follow_seconds=0.05)
    target = small_world.items[0].id
    store.transition(target, ItemState.REMOVED)
    wait_until(lambda: target not in follower.catalog, "the follower kept the removed item")
    follower.close()
    assert not follower._follower.is_alive()


def test_with_multi_process_a_takedown_or_event_elsewhere_shapes_the_very_next_feed(
        db_engine, small_world, clock, open_recommender, tmp_path):
    """BentoML workers share a database: the next feed of *every* worker must drop an item
    another worker took down, and reflect its events, before any follow tick."""
    from core.contracts import ItemState
    from core.storage.db import make_session_factory

    sessions = make_session_factory(db_engine)
    small_world.write_to_db(sessions)
    first, store = open_recommender(db_engine, clock, index_dir=tmp_path / "a",
                                    multi_process=True)
    second, _ = open_recommender(db_engine, clock, index_dir=tmp_path / "b",
                                 multi_process=True)
    page = [i.item_id for i in second.feed.feed("anyone", 10).items]
    assert len(page) == 10
    store.transition(page[0], ItemState.REMOVED)  # heard by the first worker only
    assert page[0] in second.catalog
    again = [i.item_id for i in second.feed.feed("anyone", 10).items]
    assert page[0] not in again and len(again) == 10  # dropped and the page refilled
    assert page[0] not in second.catalog

    liked = small_world.items[3].id
    first.events.ingest([{"event_id": "mp1", "user_id": "fan", "item_id": liked,
                          "type": "like", "ts": clock.dt}])
    assert liked not in {i.item_id for i in second.feed.feed("fan", 50).items}
    assert liked in second.state.profiles.get("fan").seen  # applied by the request itself


def test_without_multi_process_a_feed_asks_the_database_nothing(
        sqlite_engine, small_world, clock, open_recommender, tmp_path):
    from sqlalchemy import event

    from core.storage.db import make_session_factory

    small_world.write_to_db(make_session_factory(sqlite_engine))
    rec, _ = open_recommender(sqlite_engine, clock, index_dir=tmp_path / "a")
    statements: list[str] = []
    event.listen(sqlite_engine, "before_cursor_execute",
                 lambda *args: statements.append(args[2]))
    assert rec.feed.feed("anyone", 10).items
    assert statements == []


def test_concurrent_saves_leave_one_complete_generation(tmp_path):
    import threading

    rng = np.random.default_rng(0)
    indexes = []
    for n in range(4):
        index = VectorIndex(8, "m@1")
        index.add([f"w{n}-{i}" for i in range(50 + n)], rng.normal(size=(50 + n, 8)))
        indexes.append(index)
    threads = [threading.Thread(target=index.save, args=(tmp_path,)) for index in indexes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    loaded = VectorIndex.load(tmp_path)
    rows = loaded.rows
    assert rows in (50, 51, 52, 53)
    writer = rows - 50
    assert loaded.vector(f"w{writer}-0") is not None and len(loaded) == rows
    assert len(list(tmp_path.glob("gen-*"))) >= 1


def test_candidate_cache_reuses_a_users_candidates_until_anything_they_read_changes(
        h, clock, tmp_path):
    from recommender.ranking import HeuristicRanker
    from recommender.service import FeedService

    state = _world(h, clock, tmp_path, n=600, candidate_cache_seconds=30)
    service = FeedService(state, HeuristicRanker(state.settings.weights))
    cache = service.candidate_cache
    assert cache is not None
    first = service.feed("u1", 10)
    assert (cache.hits, cache.misses) == (0, 1)
    again = service.feed("u1", 10)
    assert cache.hits == 1 and [i.item_id for i in again.items] == [
        i.item_id for i in first.items]
    # a taken-down item leaves the very next feed: a takedown invalidates cached rows
    gone = first.items[0].item_id
    state.catalog.remove(gone)
    assert gone not in {i.item_id for i in service.feed("u1", 10).items}
    assert (cache.hits, cache.misses) == (1, 2)
    service.feed("u1", 10)
    assert cache.hits == 2
    # a new upload is proposed at once: the fresh channel is read on every request
    state.catalog.add(CatalogItem("brand-new", "c-new", clock.now, tags=("t1",)),
                      np.ones(8, np.float32))
    merged = service._candidates(
        MatchRequest("u1", state.profiles.get("u1"), clock.now,
                     state.profiles.get("u1").excluded()), set())
    assert "brand-new" in merged.proposed_by("fresh") and cache.hits == 3
    # other exclusions, the user's own event, a refit, the clock: each recomputes
    service.feed("u1", 10, exclude=[first.items[1].item_id])
    assert cache.misses == 3
    state.apply(h.ev("u1", first.items[1].item_id, "like", clock.dt))
    liked = service.feed("u1", 10)
    assert cache.misses == 4 and first.items[1].item_id not in {i.item_id for i in liked.items}
    state.collaborative.refresh()
    service.feed("u1", 10)
    assert cache.misses == 5
    clock.advance(31)
    service.feed("u1", 10)
    assert cache.misses == 6
    service.feed("u1", 10)
    assert (cache.hits, cache.misses) == (4, 6)


def test_cached_candidates_are_the_candidates_matching_now_would_give(h, clock, tmp_path):
    """The cache keeps the personal channels' merge rows and joins the volatile
    channels' rows on each request: the result must be the one merge of everything."""
    from recommender.ranking import HeuristicRanker
    from recommender.service import FeedService

    state = _world(h, clock, tmp_path, n=600, candidate_cache_seconds=30)
    service = FeedService(state, HeuristicRanker(state.settings.weights))
    checked = 0
    for user in ("u1", "u2", "u3"):
        profile = state.profiles.get(user)
        request = MatchRequest(user, profile, clock.now,
                               profile.excluded() if profile is not None else set())
        service._candidates(request, set())  # fills the cache
        cached = service._candidates(request, set())
        direct = service.matcher.candidates(request)
        assert cached.item_ids == direct.item_ids
        assert cached.proposed_by("trending") or cached.proposed_by("fresh")
        np.testing.assert_array_equal(cached.scores, direct.scores)
        np.testing.assert_array_equal(cached.rank_scores, direct.rank_scores)
        assert cached.fresh == direct.fresh
        checked += len(direct)
    assert service.candidate_cache is not None and service.candidate_cache.hits == 3
    assert checked > 0


def test_candidate_cache_off_matches_every_request(h, clock, tmp_path):
    from recommender.ranking import HeuristicRanker
    from recommender.service import FeedService

    state = _world(h, clock, tmp_path, n=600, candidate_cache_seconds=0)
    service = FeedService(state, HeuristicRanker(state.settings.weights))
    assert service.candidate_cache is None
    calls = []
    original = service.matcher.candidates
    service.matcher.candidates = lambda request: calls.append(1) or original(request)
    service.feed("u2", 10)
    service.feed("u2", 10)
    assert len(calls) == 2

"""Collaborative channels learned from events, and time replayed as of the log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from scipy import sparse

from recommender.catalog import CatalogItem
from recommender.channels import FreshChannel, MatchRequest
from recommender.collaborative import implicit_als, item_knn, mips_items
from recommender.ranking import HeuristicRanker
from recommender.service import FeedService


def _state(h, clock, tmp_path, n_items=40, created=None, **overrides):
    rng = np.random.default_rng(0)
    items = [
        (CatalogItem(f"i{n}", f"c{n}", (created or clock()) - 3600 * n, tags=(f"t{n % 4}",)),
         rng.normal(size=4).astype(np.float32))
        for n in range(n_items)
    ]
    settings = h.make_settings(tmp_path, **overrides)
    return h.memory_state(items, settings, clock)


def _two_tastes(h, state, ts, users=12):
    """Users 'a*' engage i0..i9, users 'b*' engage i10..i19 (each all but one)."""
    for u in range(users):
        group, first = ("a", 0) if u % 2 == 0 else ("b", 10)
        for j in range(10):
            if j != u % 10:
                state.apply(h.ev(f"{group}{u}", f"i{first + j}", "view", ts, watch_ms=9000,
                                 item_duration_ms=10_000))


def test_item_knn_and_als_learn_who_likes_what(h, clock, tmp_path):
    state = _state(h, clock, tmp_path, collaborative={"min_events": 1, "factors": 8})
    _two_tastes(h, state, clock.dt)
    fit = state.collaborative.refresh()
    assert fit is not None and fit.version == 1
    newcomer = "new"
    state.apply(h.ev(newcomer, "i3", "view", clock.dt, watch_ms=9000, item_duration_ms=10_000))
    # the user side is online: no refit needed for the newcomer's first engagement
    knn = state.collaborative.knn(newcomer, 5, exclude={"i3"})
    mf = state.collaborative.mf(newcomer, 5, exclude={"i3"})
    assert len(knn) == 5 and all(int(i[1:]) < 10 for i, _ in knn), knn
    assert len(mf) == 5 and all(int(i[1:]) < 10 for i, _ in mf), mf
    assert [s for _, s in knn] == sorted((s for _, s in knn), reverse=True)
    # an event from the other taste moves the next answer at once
    for item in ("i11", "i12", "i13", "i14"):
        state.apply(h.ev(newcomer, item, "view", clock.dt, watch_ms=9000,
                         item_duration_ms=10_000))
    mf = state.collaborative.mf(newcomer, 3, exclude={"i3", "i11", "i12", "i13", "i14"})
    assert all(10 <= int(i[1:]) < 20 for i, _ in mf), mf


def test_feed_serves_collaborative_candidates(h, clock, tmp_path):
    state = _state(h, clock, tmp_path, collaborative={"min_events": 1, "factors": 8},
                   max_per_creator=50, max_per_category=50)
    _two_tastes(h, state, clock.dt)
    state.collaborative.refresh()
    feed = FeedService(state, HeuristicRanker(state.settings.weights)).feed("a0", 5)
    ids = [i.item_id for i in feed.items]
    assert ids[0] == "i0"  # the one item of its taste a0 has not seen, from both channels
    assert {"item_knn", "mf"} <= set(feed.items[0].channels)


def test_a_like_with_its_view_counts_once(h, clock, tmp_path):
    state = _state(h, clock, tmp_path)
    state.apply(h.ev("u", "i1", "view", clock.dt, watch_ms=8000, item_duration_ms=10_000))
    state.apply(h.ev("u", "i1", "like", clock.dt + timedelta(seconds=1)))
    state.apply(h.ev("u", "i2", "view", clock.dt, watch_ms=8000, item_duration_ms=10_000))
    profile = state.profiles.get("u")
    assert [i for i, _ in profile.recent_positives] == ["i1", "i2"]
    # the pair's confidence is the strongest feedback (the like), not the sum
    assert state.collaborative.history("u") == {"i1": 1.5, "i2": 0.8}


def test_a_replayed_log_is_read_as_of_its_own_time(h, clock, tmp_path):
    """Events from 1998 replayed in 2025: interests and trending are not decayed away,
    and a release dated after the log is not 'fresh'."""
    then = datetime(1998, 5, 1, tzinfo=UTC)
    state = _state(h, clock, tmp_path, created=then.timestamp())
    for n in range(5):
        state.apply(h.ev("u", f"i{n}", "like", then + timedelta(minutes=n)))
    now = state.now()
    assert now < clock() - 365 * 86400  # not the wall clock
    assert now >= then.timestamp()
    assert state.stats.top_trending(3, now)  # trending as of the log's time
    profile = state.profiles.get("u")
    assert profile.tags.top(2, profile.as_of(now))
    # an item released after the time the feed is read at is not fresh (not out yet)
    state.catalog.add(CatalogItem("future", "c", now + 86400))
    fresh = FreshChannel(state.catalog, 24 * 365 * 10).match(
        MatchRequest("u", profile, now), 50)
    assert fresh and "future" not in {i for i, _ in fresh}
    # a wall-clock service (cap off) reads 2025, and fresh drops the 1998 items
    state.settings.clock_lag_cap_hours = None
    assert state.now() == clock()


def test_mips_padding_keeps_inner_product_order():
    rng = np.random.default_rng(1)
    items = rng.normal(size=(50, 6)).astype(np.float32)
    query = rng.normal(size=6).astype(np.float32)
    padded = mips_items(items, float(np.linalg.norm(items, axis=1).max()))
    assert np.allclose(np.linalg.norm(padded, axis=1), 1.0, atol=1e-5)
    by_cosine = np.argsort(-(padded @ np.append(query, 0.0)))
    assert list(by_cosine) == list(np.argsort(-(items @ query)))


def test_item_knn_is_cosine_of_engagement_columns():
    x = sparse.csr_matrix(np.array([[1, 1, 0], [1, 1, 1], [0, 0, 1]], dtype=np.float32))
    sim = item_knn(x, neighbours=5, shrink=0.0).toarray()
    assert sim[0, 1] == np.float32(1.0) and sim[0, 0] == 0
    assert np.isclose(sim[0, 2], 1 / 2)  # one shared user of 2 and 2
    factors = implicit_als(x, 2, regularisation=0.1, alpha=10, iterations=5)
    assert factors.shape == (3, 2) and np.isfinite(factors).all()


def test_weighted_row_sum_matches_scipy():
    from recommender.collaborative import weighted_row_sum

    rng = np.random.default_rng(3)
    matrix = sparse.random(40, 30, density=0.2, random_state=4, format="csr")
    rows = np.asarray([3, 0, 17, 3, 39])
    weights = rng.random(len(rows))
    expected = np.asarray(matrix[rows].T @ weights).ravel()
    np.testing.assert_allclose(weighted_row_sum(matrix, rows, weights), expected)
    assert not weighted_row_sum(matrix, np.zeros(0, np.int64), np.zeros(0)).any()


def test_als_factors_recommend_within_the_users_taste_group():
    """Two taste groups: a user folded in (``fold_in``'s confidence, 1 + alpha * feedback)
    from three of a group's items ranks that group's other items above the other
    group's (nearly every pair), so the library's fit and the serving fold-in agree on
    what the matrix means."""
    from recommender.collaborative import fold_in

    ordered = []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        dense = np.zeros((200, 20), np.float32)
        for u in range(200):
            group = range(0, 10) if u < 100 else range(10, 20)
            dense[u, rng.choice(list(group), size=4, replace=False)] = 1.0
        factors = implicit_als(sparse.csr_matrix(dense), 4, regularisation=1.0, alpha=10,
                               iterations=15, seed=1)
        gram = factors.T.astype(np.float64) @ factors.astype(np.float64)
        scores = factors @ fold_in(factors[[0, 1, 2]], np.ones(3), gram, 1.0, 10)
        ordered.append((scores[3:10, None] > scores[None, 10:]).mean())
    assert np.mean(ordered) > 0.9, ordered


def test_ease_covers_only_co_engaged_items_up_to_the_cap():
    from recommender.collaborative import ease_on_most_engaged, ease_weights

    dense = np.zeros((6, 5), np.float32)
    dense[:, 0] = 1  # six users
    dense[:4, 1] = 1  # four
    dense[2:5, 2] = 1  # three
    dense[5, 3] = 1  # one user: nothing to learn from
    x = sparse.csr_matrix(dense)
    full = ease_on_most_engaged(x, lam=1.0, neighbours=10, max_items=10)
    assert full is not None and full.shape == (5, 5)
    assert full[3].nnz == 0 and full[:, 3].nnz == 0 and full[4].nnz == 0
    expected = ease_weights(x[:, [0, 1, 2]].tocsr(), 1.0, 10).toarray()
    assert np.allclose(full.toarray()[np.ix_([0, 1, 2], [0, 1, 2])], expected)
    capped = ease_on_most_engaged(x, lam=1.0, neighbours=10, max_items=2)
    assert capped is not None and capped[2].nnz == 0 and capped[0, 1] != 0
    assert ease_on_most_engaged(x[:, [3, 4]].tocsr(), 1.0, 10, 10) is None

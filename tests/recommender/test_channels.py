from __future__ import annotations

import itertools
from datetime import timedelta

import numpy as np

from recommender.catalog import CatalogItem
from recommender.channels import (
    CohortChannel,
    CoVisitationChannel,
    EmbeddingChannel,
    FollowedCreatorsChannel,
    FreshChannel,
    Matcher,
    MatchRequest,
    TagCategoryChannel,
    TrendingChannel,
    default_channels,
)


def _state(h, clock, tmp_path, n=40, **overrides):
    settings = h.make_settings(tmp_path, **overrides)
    rng = np.random.default_rng(1)
    items = []
    for i in range(n):
        created = (h.T0 - timedelta(hours=200 - 5 * i)).timestamp()
        tag = ("cats", "dogs", "cars", "food")[i % 4]
        item = CatalogItem(f"i{i}", f"c{i % 5}", created, tags=(tag,),
                           categories=((f"cat-{i % 4}", 0.8),))
        vec = np.eye(4, dtype=np.float32)[i % 4] + 0.1 * rng.normal(size=4).astype(np.float32)
        items.append((item, vec))
    return h.memory_state(items, settings, clock)


def _request(state, user, clock, exclude=()):
    return MatchRequest(user, state.profiles.get(user), clock(), set(exclude))


def test_personal_channels_follow_the_profile(h, clock, tmp_path):
    state = _state(h, clock, tmp_path)
    for n, item in enumerate(["i0", "i4", "i8"]):  # cats, category 0, creators c0,c4,c3
        state.apply(h.ev("u", item, "like", h.T0 - timedelta(minutes=10 - n)))
    req = _request(state, "u", clock, exclude={"i0", "i4", "i8"})

    emb = EmbeddingChannel(state.catalog).match(req, 5)
    assert len(emb) == 5 and all(int(i[1:]) % 4 == 0 for i, _ in emb)
    assert all(s1 >= s2 for (_, s1), (_, s2) in itertools.pairwise(emb))

    tags = TagCategoryChannel(state.catalog).match(req, 5)
    assert tags and all(int(i[1:]) % 4 == 0 for i, _ in tags)
    assert not {"i0", "i4", "i8"} & {i for i, _ in tags}

    assert EmbeddingChannel(state.catalog).match(_request(state, "nobody", clock), 5) == []
    assert TagCategoryChannel(state.catalog).match(_request(state, "nobody", clock), 5) == []


def test_covisitation_uses_sessions_split_by_a_30_minute_gap(h, clock, tmp_path):
    state = _state(h, clock, tmp_path)
    t = h.T0 - timedelta(hours=5)
    state.apply(h.ev("a", "i1", "like", t))
    state.apply(h.ev("a", "i2", "like", t + timedelta(minutes=5)))
    state.apply(h.ev("a", "i3", "like", t + timedelta(minutes=50)))  # new session
    assert [i for i, _ in state.covisitation.neighbours_of("i1", 5)] == ["i2"]
    assert state.covisitation.neighbours_of("i3", 5) == []
    state.apply(h.ev("b", "i1", "like", h.T0 - timedelta(minutes=1)))
    hits = CoVisitationChannel(state.covisitation).match(_request(state, "b", clock, {"i1"}), 5)
    assert [i for i, _ in hits] == ["i2"]


def test_trending_fresh_and_followed_channels(h, clock, tmp_path):
    state = _state(h, clock, tmp_path)
    for n in range(3):
        state.apply(h.ev(f"u{n}", "i5", "like", h.T0 - timedelta(minutes=n)))
    state.apply(h.ev("u9", "i6", "like", h.T0 - timedelta(days=3)))
    trending = TrendingChannel(state.stats).match(_request(state, "x", clock), 5)
    assert [i for i, _ in trending] == ["i5", "i6"]

    fresh = FreshChannel(state.catalog, window_hours=24).match(_request(state, "x", clock), 10)
    ages = [clock() - state.catalog.get(i).created_at for i, _ in fresh]
    assert fresh and max(ages) <= 24 * 3600 and fresh[0][0] == "i39"

    state.apply(h.ev("f", "i2", "follow", h.T0 - timedelta(minutes=1)))  # creator c2
    followed = FollowedCreatorsChannel(state.catalog, 1000).match(_request(state, "f", clock), 5)
    assert followed and all(state.catalog.get(i).creator_id == "c2" for i, _ in followed)
    state.apply(h.ev("f", "i2", "unfollow", h.T0))
    assert FollowedCreatorsChannel(state.catalog, 1000).match(
        _request(state, "f", clock), 5) == []


def test_cohorts_cluster_user_vectors_and_serve_their_items(h, clock, tmp_path):
    state = _state(h, clock, tmp_path, cohort_min_users=4)
    for u in range(8):  # two groups of users: cats lovers and cars lovers
        group = [0, 4, 8] if u < 4 else [2, 6, 10]
        for n, item in enumerate(group):
            state.apply(h.ev(f"u{u}", f"i{item}", "like", h.T0 - timedelta(minutes=n)))
    assert state.cohorts.refresh(state.profiles, clock())
    assert state.cohorts.cohort_of(state.profiles.get("u0")) != state.cohorts.cohort_of(
        state.profiles.get("u7"))
    state.apply(h.ev("new-cat-fan", "i12", "like", h.T0))
    hits = CohortChannel(state.cohorts).match(_request(state, "new-cat-fan", clock), 3)
    assert {i for i, _ in hits} <= {"i0", "i4", "i8"} and hits


def test_matcher_applies_quotas_merges_and_names_channels(h, clock, tmp_path):
    state = _state(h, clock, tmp_path, candidate_limit=12,
                   quotas={"embedding": 6, "tag_category": 0, "covisitation": 0, "cohort": 0,
                           "trending": 3, "fresh": 4, "followed": 0})
    for n, item in enumerate(["i0", "i4"]):
        state.apply(h.ev("u", item, "like", h.T0 - timedelta(minutes=n)))
    matcher = Matcher(default_channels(state.settings, state.catalog, state.stats,
                                       state.covisitation, state.cohorts),
                      state.settings, state.catalog)
    cands = matcher.match(_request(state, "u", clock, exclude={"i0"}))
    ids = [c.item_id for c in cands]
    assert len(ids) == len(set(ids)) <= 12 and "i0" not in ids
    by_channel = {name: [c for c in cands if name in c.channels] for name in matcher.channel_names}
    assert len(by_channel["embedding"]) == 6 and len(by_channel["fresh"]) == 4
    assert not by_channel["tag_category"]
    assert all(0 < s <= 1 for c in cands for s in c.channels.values())

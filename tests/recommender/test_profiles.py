"""Each profile rule on its own (recommender.profiles docstring numbers them)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from recommender.catalog import CatalogItem
from recommender.popularity import ItemCounters
from recommender.profiles import (
    DecayedMap,
    UserProfile,
    graded_feedback,
    is_bounce,
    item_weight,
    noise_factor,
    popularity_discount,
)
from recommender.settings import ProfileSettings

S = ProfileSettings()


def test_rule1_views_are_graded_by_watch_ratio_not_binary(h):
    def view(watch: int, duration: int = 20_000):
        return h.ev("u", "i", "view", h.T0, watch_ms=watch, item_duration_ms=duration)

    half, most, over = view(10_000), view(18_000), view(40_000)
    assert graded_feedback(half, S) == pytest.approx(0.5)
    assert graded_feedback(most, S) == pytest.approx(0.9)
    assert graded_feedback(over, S) == pytest.approx(1.0)  # capped
    replay = h.ev("u", "i", "replay", h.T0, watch_ms=20_000, item_duration_ms=20_000)
    assert graded_feedback(replay, S) == pytest.approx(1.0 + S.replay_bonus)
    assert graded_feedback(h.ev("u", "i", "like", h.T0), S) == S.like_weight


def test_rule2_negative_signals_and_very_short_views(h):
    for kind, weight in [("skip", S.skip_weight), ("hide", S.hide_weight),
                         ("report", S.report_weight)]:
        assert graded_feedback(h.ev("u", "i", kind, h.T0), S) == weight < 0
    bounce = h.ev("u", "i", "view", h.T0, watch_ms=800, item_duration_ms=30_000)
    assert is_bounce(bounce, S)
    assert graded_feedback(bounce, S) == S.short_view_weight < 0
    # short in milliseconds but most of a very short clip: not a bounce
    short_clip = h.ev("u", "i", "view", h.T0, watch_ms=1500, item_duration_ms=1600)
    assert not is_bounce(short_clip, S)
    assert graded_feedback(short_clip, S) > 0.9


def test_rule3_impressions_without_engagement_sink_interest(h, clock, tmp_path):
    settings = h.make_settings(tmp_path)
    shown = CatalogItem("a", "c1", h.T0.timestamp(), tags=("cats",))
    watched = CatalogItem("b", "c2", h.T0.timestamp(), tags=("dogs",))
    state = h.memory_state([(shown, None), (watched, None)], settings, clock)
    for n in range(5):
        ts = h.T0 + timedelta(minutes=n)
        state.apply(h.ev("u", "a", "impression", ts))
        state.apply(h.ev("u", "b", "impression", ts))
    state.apply(h.ev("u", "b", "view", h.T0, watch_ms=15_000, item_duration_ms=20_000))
    profile = state.profiles.get("u")
    now = clock()
    assert profile.tags.get("cats", now) < 0 < profile.tags.get("dogs", now)


def test_rule4_noise_filter_discounts_high_bounce_items():
    clickbait = ItemCounters(views=20, bounces=16)
    honest = ItemCounters(views=20, bounces=2)
    too_few = ItemCounters(views=2, bounces=2)
    assert noise_factor(clickbait, S) == pytest.approx(0.2)
    assert noise_factor(honest, S) == 1.0
    assert noise_factor(too_few, S) == 1.0  # not enough evidence yet
    assert noise_factor(None, S) == 1.0


def test_rule5_popular_items_teach_less(h):
    like = h.ev("u", "i", "like", h.T0)
    niche = item_weight(like, ItemCounters(positives=0), S)
    pivot = item_weight(like, ItemCounters(positives=int(S.popularity_pivot)), S)
    hit = item_weight(like, ItemCounters(positives=5000), S)
    assert niche == pytest.approx(S.like_weight)
    assert pivot == pytest.approx(S.like_weight / 2)
    assert hit < pivot < niche
    assert popularity_discount(0, S) == 1.0
    # negatives are not discounted: hiding a hit is as telling as hiding a niche item
    hide = h.ev("u", "i", "hide", h.T0)
    assert item_weight(hide, ItemCounters(positives=5000), S) == S.hide_weight


def test_rule6_interests_halve_every_half_life():
    half_life = 3600.0
    interests = DecayedMap(half_life)
    interests.add("soccer", 2.0, 0.0)
    assert interests.get("soccer", 0.0) == pytest.approx(2.0)
    assert interests.get("soccer", half_life) == pytest.approx(1.0)
    assert interests.get("soccer", 3 * half_life) == pytest.approx(0.25)
    interests.add("soccer", 1.0, half_life)  # 1.0 left + 1.0 new
    assert interests.get("soccer", half_life) == pytest.approx(2.0)
    interests.add("cooking", 1.0, 0.0)  # out of order: counted as of its own time
    assert interests.get("cooking", half_life) == pytest.approx(0.5)
    assert [k for k, _ in interests.top(2, half_life)] == ["soccer", "cooking"]


def test_rule7_user_vector_is_decayed_weighted_mean_of_liked_items():
    profile = UserProfile("u", half_life_s=3600.0)
    a, b = np.array([1, 0, 0], np.float32), np.array([0, 1, 0], np.float32)
    profile.add_vector(a, 1.0, 0.0)
    profile.add_vector(b, 1.0, 3600.0)  # a has decayed to 0.5 by now
    expected = 0.5 * a + b
    np.testing.assert_allclose(profile.vector, expected / np.linalg.norm(expected), rtol=1e-5)
    profile.add_vector(np.array([0, 0, 1], np.float32), -1.0, 3600.0)  # ignored
    np.testing.assert_allclose(profile.vector, expected / np.linalg.norm(expected), rtol=1e-5)
    assert UserProfile("v", 3600.0).vector is None

"""The feed learns: a simulated user's watch time beats the popularity feed's."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from core.storage.db import make_session_factory
from recommender.simulation import SimulatedUser, SyntheticWorld
from recommender.simulation.harness import popularity_feed, run_user


def test_simulated_user_interests_and_responses_are_consistent():
    world = SyntheticWorld(n_items=200, n_categories=8, dim=16, seed=3)
    user = SimulatedUser("u", world, seed=5, drift=0.0)
    favourite = int(np.argmax(user.interests))
    loved = [i for i in world.items if i.category == favourite and not i.clickbait]
    disliked = min(range(8), key=lambda c: user.interests[c])
    meh = [i for i in world.items if i.category == disliked and not i.clickbait]
    watched = [user.respond(i, world.end).watch_ms / i.duration_ms for i in loved]
    skipped = [user.respond(i, world.end).watch_ms / i.duration_ms for i in meh]
    assert np.mean(watched) > 0.6 > 0.2 > np.mean(skipped)
    drifting = SimulatedUser("d", world, seed=5, drift=0.05)
    start = drifting.interests.copy()
    for item in world.items[:50]:
        drifting.respond(item, world.end)
    assert np.abs(drifting.interests - start).sum() > 0.1
    assert np.isclose(drifting.interests.sum(), 1.0)


def test_after_200_events_the_feed_beats_the_popularity_feed(
        sqlite_engine, clock, open_recommender):
    world = SyntheticWorld(n_items=720, n_categories=12, dim=32, seed=11,
                           start=clock.dt - timedelta(days=20), hours=24 * 20)
    world.write_to_db(make_session_factory(sqlite_engine))
    rec, _ = open_recommender(sqlite_engine, clock, exploration_epsilon=0.1,
                              cohort_min_users=8, cohort_refresh_seconds=1800)
    for n in range(24):  # a background population makes popularity meaningful
        run_user(rec, SimulatedUser(f"bg{n}", world, seed=100 + n), world, clock.advance,
                 min_events=40)
    user = SimulatedUser("target", world, seed=7)
    log = run_user(rec, user, world, clock.advance, min_events=200)
    assert log.events >= 200

    personal = [i.item_id for i in rec.feed.feed("target", 20).items]
    popular = popularity_feed(rec, "target", 20)
    assert len(personal) == len(popular) == 20
    personal_ms = np.mean([user.expected_watch_ms(world.by_id[i]) for i in personal])
    popular_ms = np.mean([user.expected_watch_ms(world.by_id[i]) for i in popular])
    assert personal_ms > 1.5 * popular_ms, (personal_ms, popular_ms)

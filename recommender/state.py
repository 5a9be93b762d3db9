"""The recommender's in-process state and how one event changes it.

``OnlineState`` bundles the catalog, profiles, item counters, co-visitation and cohorts;
``apply`` is the single place an event touches them, used both online (right after an
event is stored) and when replaying the log at start, so both paths agree.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from core.contracts import Event
from recommender.catalog import Catalog, epoch
from recommender.cohorts import Cohorts
from recommender.collaborative import Collaborative
from recommender.covisitation import CoVisitation
from recommender.impressions import ImpressionLog, label_of
from recommender.popularity import ItemStats
from recommender.profiles import (
    ENGAGEMENT_TYPES,
    POSITIVE_THRESHOLD,
    ProfileStore,
    UserProfile,
    graded_feedback,
    is_bounce,
    item_weight,
    watch_ratio,
)
from recommender.settings import RecommenderSettings

Clock = Callable[[], float]


@dataclass
class OnlineState:
    settings: RecommenderSettings
    catalog: Catalog
    profiles: ProfileStore
    stats: ItemStats
    covisitation: CoVisitation
    cohorts: Cohorts
    collaborative: Collaborative
    impressions: ImpressionLog
    clock: Clock = time.time
    lock: threading.RLock = field(default_factory=threading.RLock)
    newest_event_ts: float = 0.0

    def now(self) -> float:
        """The feed's clock: the wall clock, but no later than ``clock_lag_cap_hours``
        after the newest event or item. A live service gets the wall clock; a log
        replayed at its original timestamps (an evaluation, a backfill) is read as of its
        own time, so trending and freshness do not decay to nothing."""
        wall = self.clock()
        cap = self.settings.clock_lag_cap_hours
        newest = max(self.newest_event_ts, self.catalog.newest_created_at)
        if cap is None or newest <= 0:
            return wall
        return min(wall, newest + cap * 3600.0)

    @classmethod
    def create(
        cls, settings: RecommenderSettings, catalog: Catalog, clock: Clock = time.time
    ) -> OnlineState:
        return cls(
            settings=settings, catalog=catalog, profiles=ProfileStore(settings.profile),
            stats=ItemStats(settings.trending_half_life_hours),
            covisitation=CoVisitation(settings.covisitation_window,
                                      settings.covisitation_neighbours),
            cohorts=Cohorts(settings), collaborative=Collaborative(settings),
            impressions=ImpressionLog(settings.online_ranker.outcome_window_seconds),
            clock=clock,
        )

    def apply(self, event: Event) -> float:
        """Fold one stored event into the state; returns the weight the profile got."""
        with self.lock:
            weight = self.apply_to_profile(self.profiles.get_or_create(event.user_id), event)
            self.apply_to_items(event)
        return weight

    def apply_to_profile(self, profile: UserProfile, event: Event) -> float:
        """The user's half of ``apply``: the profile and the session's co-visitation.
        With a shared stream (``recommender.stream``) only the worker that owns the
        user's partition runs it, on the profile it keeps in Redis."""
        s = self.settings
        ts = epoch(event.ts)
        with self.lock:
            item = self.catalog.get(event.item_id)
            counters = self.stats.get(event.item_id)
            weight = item_weight(event, counters, s.profile)

            if profile.last_ts and ts - profile.last_ts > s.session_gap_minutes * 60:
                profile.session_items.clear()
            profile.last_ts = max(profile.last_ts, ts)
            profile.n_events += 1

            kind = event.type
            if kind in ENGAGEMENT_TYPES or kind == "skip" or (
                kind == "impression" and s.impressions_count_as_seen
            ):
                profile.seen.add(event.item_id)
            if kind in ("hide", "report"):
                profile.blocked.add(event.item_id)
            creator = item.creator_id if item else _context_str(event, "creator_id")
            if creator and kind == "follow":
                profile.followed.add(creator)
            elif creator and kind == "unfollow":
                profile.followed.discard(creator)

            if item is not None:
                for tag in item.tags:
                    profile.tags.add(tag, weight, ts)
                for category, confidence in item.categories:
                    profile.categories.add(category, weight * confidence, ts)
                profile.creators.add(item.creator_id, weight, ts)
                if weight > 0:
                    vector = self.catalog.index.vector(item.id)
                    if vector is not None:
                        profile.add_vector(vector, weight, ts)
            if weight >= POSITIVE_THRESHOLD:
                profile.n_positives += 1
                profile.add_recent_positive(event.item_id, ts)
                self.covisitation.add_session_positive(profile.session_items, event.item_id)
        return weight

    def apply_to_items(self, event: Event, *, counters_only: bool = False) -> None:
        """The items' half of ``apply`` (no profile): co-engagement, the ranker's
        training labels, item counters. With a shared stream every process runs it on
        every event; it must follow ``apply_to_profile``, whose weight reads the
        counters as they were before this event. ``counters_only``: the item counters
        alone (an event worker: its profile weights read them, nothing else here)."""
        s = self.settings
        ts = epoch(event.ts)
        kind = event.type
        with self.lock:
            self.newest_event_ts = max(self.newest_event_ts, ts)
            feedback = graded_feedback(event, s.profile)
            ratio = watch_ratio(event)
            if not counters_only:
                if kind in ("hide", "report"):
                    self.collaborative.disengage(event.user_id, event.item_id)
                elif kind in ENGAGEMENT_TYPES and feedback > 0:
                    self.collaborative.engage(event.user_id, event.item_id, feedback)
                outcome = label_of(kind, ratio, is_bounce(event, s.profile))
                if outcome is not None:
                    self.impressions.outcome(event.user_id, event.item_id, outcome)
            self.stats.record(
                event.item_id, ts,
                impression=kind == "impression",
                view=kind in ("view", "complete", "replay"),
                bounce=is_bounce(event, s.profile),
                complete=kind == "complete" or (kind == "view" and (ratio or 0) >= 0.9),
                like=kind == "like",
                positive_weight=max(feedback, 0.0),
            )


def _context_str(event: Event, key: str) -> str | None:
    value = event.context.get(key)
    return value if isinstance(value, str) and value else None

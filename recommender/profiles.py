"""User profiles and the rules that turn events into interests (Toutiao practice).

Each rule is a small function, documented and tested on its own:

1. **Graded implicit feedback** (``graded_feedback``): a view is worth its watch ratio
   ``watch_ms / item_duration_ms`` (capped at 1; a replay adds ``replay_bonus``), not a
   flat 1; ``complete`` is worth 1; explicit actions (like, comment, share, save, follow)
   carry their own weights.
2. **Negative signals** (same function): skip, hide and report are negative; a very short
   view (under ``short_view_ms`` and under ``short_view_ratio`` of the item) is a bounce
   and negative, not a weak positive.
3. **Impressions without engagement** (same function): each impression costs the item's
   tags and categories ``impression_weight``; an item that was watched earns that back
   many times, one that is shown again and again without a view sinks.
4. **Noise filtering** (``noise_factor``): an item most viewers bounce from (clickbait)
   counts less: once it has ``noise_min_views`` views and a bounce rate above
   ``noise_bounce_threshold``, positive feedback on it is scaled by ``1 - bounce_rate``.
5. **Popularity discount** (``popularity_discount``): liking what everyone likes says
   little about a user; positive feedback is scaled by ``1 / (1 + sqrt(pop / pivot))``.
6. **Time decay** (``DecayedMap``): every interest decays exponentially with
   ``half_life_hours``; reads decay to "now", so old interests fade without a batch job.
7. **User vector** (``UserProfile.add_vector``): the decayed, feedback-weighted mean of the
   fused vectors of items with positive feedback, L2-normalised.
"""

from __future__ import annotations

import heapq
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from core.contracts import Event
from recommender.popularity import ItemCounters, decay_factor
from recommender.settings import ProfileSettings

# A view of unknown item length is graded against this many milliseconds.
REFERENCE_DURATION_MS = 15_000
POSITIVE_THRESHOLD = 0.25  # feedback at or above this counts as a positive interaction
ENGAGEMENT_TYPES = frozenset(
    {"view", "complete", "replay", "like", "comment", "share", "save", "follow"}
)


def watch_ratio(event: Event) -> float | None:
    if event.watch_ms is None:
        return None
    duration = event.item_duration_ms or REFERENCE_DURATION_MS
    return event.watch_ms / max(duration, 1)


def is_bounce(event: Event, s: ProfileSettings) -> bool:
    """A view so short that the user rejected the item (rule 2)."""
    if event.type != "view" or event.watch_ms is None:
        return False
    ratio = watch_ratio(event) or 0.0
    return event.watch_ms < s.short_view_ms and ratio < s.short_view_ratio


def graded_feedback(event: Event, s: ProfileSettings) -> float:
    """Rules 1-3: the signed strength of one event, before item-level discounts."""
    kind = event.type
    if kind == "impression":
        return s.impression_weight
    if kind in ("view", "replay"):
        if is_bounce(event, s):
            return s.short_view_weight
        ratio = watch_ratio(event)
        graded = min(1.0, ratio) if ratio is not None else 0.5
        return graded + (s.replay_bonus if kind == "replay" else 0.0)
    fixed = {
        "complete": 1.0,
        "like": s.like_weight,
        "comment": s.comment_weight,
        "share": s.share_weight,
        "save": s.save_weight,
        "follow": s.follow_weight,
        "unfollow": -s.follow_weight,
        "skip": s.skip_weight,
        "hide": s.hide_weight,
        "report": s.report_weight,
    }
    return fixed[kind]


def noise_factor(counters: ItemCounters | None, s: ProfileSettings) -> float:
    """Rule 4: how much positive feedback on a high-bounce item still counts."""
    if counters is None or counters.views < s.noise_min_views:
        return 1.0
    rate = counters.bounce_rate
    return 1.0 - rate if rate > s.noise_bounce_threshold else 1.0


def popularity_discount(popularity: int, s: ProfileSettings) -> float:
    """Rule 5: 1 for a niche item, 1/2 at ``popularity_pivot`` positives, falling slowly."""
    return 1.0 / (1.0 + float(np.sqrt(max(popularity, 0) / s.popularity_pivot)))


def item_weight(
    event: Event, counters: ItemCounters | None, s: ProfileSettings
) -> float:
    """Rules 1-5 together: negatives pass undiscounted, positives are discounted."""
    weight = graded_feedback(event, s)
    if weight > 0:
        popularity = counters.positives if counters else 0
        weight *= noise_factor(counters, s) * popularity_discount(popularity, s)
    return weight


class DecayedMap:
    """key -> exponentially decayed score (rule 6); stored as (value, as-of time)."""

    __slots__ = ("_values", "half_life_s")

    def __init__(self, half_life_s: float) -> None:
        self.half_life_s = half_life_s
        self._values: dict[str, list[float]] = {}

    def add(self, key: str, amount: float, ts: float) -> None:
        cell = self._values.get(key)
        if cell is None:
            self._values[key] = [amount, ts]
        elif ts >= cell[1]:
            cell[0] = cell[0] * decay_factor(ts - cell[1], self.half_life_s) + amount
            cell[1] = ts
        else:  # an out-of-order event counts as of its own time
            cell[0] += amount * decay_factor(cell[1] - ts, self.half_life_s)

    def get(self, key: str, now: float) -> float:
        cell = self._values.get(key)
        if cell is None:
            return 0.0
        return cell[0] * decay_factor(now - cell[1], self.half_life_s)

    def top(self, n: int, now: float, *, positive_only: bool = True) -> list[tuple[str, float]]:
        scored = ((k, v * decay_factor(now - t, self.half_life_s)) for k, (v, t) in
                  self._values.items())
        if positive_only:
            scored = ((k, v) for k, v in scored if v > 0)
        return heapq.nlargest(n, scored, key=lambda kv: kv[1])

    def snapshot(self, now: float) -> dict[str, float]:
        """Every key decayed to ``now``: one pass, for scoring many items at once."""
        hl = self.half_life_s
        return {k: v * decay_factor(now - t, hl) for k, (v, t) in self._values.items()}

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)


@dataclass
class UserProfile:
    user_id: str
    half_life_s: float
    tags: DecayedMap = field(init=False)
    categories: DecayedMap = field(init=False)
    creators: DecayedMap = field(init=False)
    vector_sum: np.ndarray | None = None
    vector_weight: float = 0.0
    vector_ts: float = 0.0
    seen: set[str] = field(default_factory=set)
    blocked: set[str] = field(default_factory=set)  # hidden or reported
    followed: set[str] = field(default_factory=set)  # creator ids
    recent_positives: deque[tuple[str, float]] = field(default_factory=lambda: deque(maxlen=50))
    session_items: list[str] = field(default_factory=list)
    last_ts: float = 0.0
    n_events: int = 0
    n_positives: int = 0

    def __post_init__(self) -> None:
        self.tags = DecayedMap(self.half_life_s)
        self.categories = DecayedMap(self.half_life_s)
        self.creators = DecayedMap(self.half_life_s)

    def add_vector(self, vector: np.ndarray, weight: float, ts: float) -> None:
        """Rule 7: fold one positively rated item's vector into the decayed mean."""
        if weight <= 0:
            return
        vec = np.asarray(vector, dtype=np.float32)
        if self.vector_sum is None or self.vector_sum.shape != vec.shape:
            self.vector_sum = np.zeros_like(vec)
            self.vector_weight = 0.0
            self.vector_ts = ts
        if ts >= self.vector_ts:
            keep = decay_factor(ts - self.vector_ts, self.half_life_s)
            self.vector_sum *= keep
            self.vector_weight *= keep
            self.vector_ts = ts
            scale = weight
        else:
            scale = weight * decay_factor(self.vector_ts - ts, self.half_life_s)
        self.vector_sum += scale * vec
        self.vector_weight += scale

    @property
    def vector(self) -> np.ndarray | None:
        """The user vector, L2-normalised (decay cancels out in the mean's direction)."""
        if self.vector_sum is None or self.vector_weight <= 0:
            return None
        norm = float(np.linalg.norm(self.vector_sum))
        if norm < 1e-9:
            return None
        return (self.vector_sum / norm).astype(np.float32)

    def add_recent_positive(self, item_id: str, ts: float) -> None:
        """One entry per item: a like that arrives with its view moves the item to the
        end instead of taking a second place among the recent positives."""
        recent = self.recent_positives
        for n, (other, _) in enumerate(recent):
            if other == item_id:
                del recent[n]
                break
        recent.append((item_id, ts))

    def as_of(self, now: float) -> float:
        """The time the profile's interests are read at: the user's own latest event
        (or ``now`` if earlier). Decay orders interests by how recent they are in the
        user's history; time away from the service does not erase a user's taste, and a
        log replayed at its own timestamps does not decay every interest to zero."""
        return min(now, self.last_ts) if self.last_ts else now

    @property
    def is_cold(self) -> bool:
        return self.n_positives == 0

    def excluded(self) -> set[str]:
        return self.seen | self.blocked


class ProfileStore:
    def __init__(self, settings: ProfileSettings) -> None:
        self.settings = settings
        self.half_life_s = settings.half_life_hours * 3600.0
        self._profiles: dict[str, UserProfile] = {}
        self.lock = threading.RLock()

    def get(self, user_id: str) -> UserProfile | None:
        return self._profiles.get(user_id)

    def get_or_create(self, user_id: str) -> UserProfile:
        profile = self._profiles.get(user_id)
        if profile is None:
            profile = UserProfile(user_id, self.half_life_s)
            profile.recent_positives = deque(maxlen=self.settings.recent_positives)
            self._profiles[user_id] = profile
        return profile

    def __len__(self) -> int:
        return len(self._profiles)

    def users(self) -> list[str]:
        return list(self._profiles)

    def vectors(self) -> tuple[list[str], np.ndarray | None]:
        ids: list[str] = []
        rows: list[np.ndarray] = []
        for user_id, profile in list(self._profiles.items()):
            vec = profile.vector
            if vec is not None:
                ids.append(user_id)
                rows.append(vec)
        return ids, (np.vstack(rows) if rows else None)

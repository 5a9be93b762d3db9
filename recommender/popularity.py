"""Per-item counters learned from events: popularity, trending, bounce and completion.

``trending`` is a time-decayed sum of positive feedback (half-life
``trending_half_life_hours``); ``positives`` is the undecayed count used by the popularity
discount; ``views``/``bounces`` give the bounce rate the noise filter reads.
"""

from __future__ import annotations

import heapq
import math
import threading
from dataclasses import dataclass


def decay_factor(dt_seconds: float, half_life_seconds: float) -> float:
    """0.5 ** (dt / half_life); ``dt`` may be negative for an out-of-order event."""
    return math.pow(0.5, dt_seconds / half_life_seconds)


@dataclass(slots=True)
class ItemCounters:
    impressions: int = 0
    views: int = 0
    bounces: int = 0
    completes: int = 0
    likes: int = 0
    positives: int = 0
    trending: float = 0.0
    trending_ts: float = 0.0

    @property
    def bounce_rate(self) -> float:
        return self.bounces / self.views if self.views else 0.0

    @property
    def completion_rate(self) -> float:
        return self.completes / self.views if self.views else 0.0


class ItemStats:
    def __init__(self, trending_half_life_hours: float = 12.0) -> None:
        self.half_life_s = trending_half_life_hours * 3600.0
        self._items: dict[str, ItemCounters] = {}
        self._lock = threading.Lock()
        self._top_cache: tuple[float, int, list[tuple[str, float]]] | None = None

    def get(self, item_id: str) -> ItemCounters | None:
        return self._items.get(item_id)

    def counters(self, item_id: str) -> ItemCounters:
        c = self._items.get(item_id)
        if c is None:
            c = self._items[item_id] = ItemCounters()
        return c

    def record(
        self, item_id: str, ts: float, *, impression: bool = False, view: bool = False,
        bounce: bool = False, complete: bool = False, like: bool = False,
        positive_weight: float = 0.0,
    ) -> None:
        with self._lock:
            c = self.counters(item_id)
            c.impressions += int(impression)
            c.views += int(view)
            c.bounces += int(bounce)
            c.completes += int(complete)
            c.likes += int(like)
            if positive_weight > 0:
                c.positives += 1
                if ts >= c.trending_ts:
                    c.trending = c.trending * decay_factor(ts - c.trending_ts, self.half_life_s)
                    c.trending_ts = ts
                    c.trending += positive_weight
                else:
                    c.trending += positive_weight * decay_factor(
                        c.trending_ts - ts, self.half_life_s)

    def popularity(self, item_id: str) -> int:
        c = self._items.get(item_id)
        return c.positives if c else 0

    def trending_score(self, item_id: str, now: float) -> float:
        c = self._items.get(item_id)
        if c is None or c.trending <= 0:
            return 0.0
        return c.trending * decay_factor(now - c.trending_ts, self.half_life_s)

    def top_trending(
        self, n: int, now: float, refresh_seconds: float = 5.0
    ) -> list[tuple[str, float]]:
        """Top items by decayed trending score, cached for ``refresh_seconds`` of the clock.

        A full scan per request would cost O(items with events); the cache keeps the
        feed's latency flat while the list stays at most a few seconds stale.
        """
        cache = self._top_cache
        if cache is not None and 0 <= now - cache[0] < refresh_seconds and cache[1] >= n:
            return cache[2][:n]
        with self._lock:
            scored = [
                (item_id, c.trending * decay_factor(now - c.trending_ts, self.half_life_s))
                for item_id, c in self._items.items() if c.trending > 0
            ]
        size = max(n, 500)
        top = heapq.nlargest(size, scored, key=lambda kv: kv[1])
        self._top_cache = (now, size, top)
        return top[:n]

    def all_positive_counts(self) -> dict[str, int]:
        return {k: v.positives for k, v in self._items.items() if v.positives}

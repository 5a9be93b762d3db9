"""Per-item counters learned from events: popularity, trending, bounce and completion.

``trending`` is a time-decayed sum of positive feedback (half-life
``trending_half_life_hours``); ``positives`` is the undecayed count used by the popularity
discount; ``views``/``bounces`` give the bounce rate the noise filter reads.

Every item's trending score decays at the same rate, so the order between items never
changes with time, only with feedback: ranked by the time-free key
``ln(trending) + trending_ts · ln 2 / half_life`` (the log of the score carried back to
time 0), an item rises only when it gets positive feedback. ``ItemStats`` therefore keeps
the best ``TRENDING_KEPT`` items by that key up to date as events arrive, and the feed
reads the trending list without scanning every item. The leaders are re-sorted at most
once per ``refresh_seconds`` of the clock (scores are always decayed to the request's
time), so a steady stream of events does not make every feed request sort them.
"""

from __future__ import annotations

import heapq
import math
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np

TRENDING_KEPT = 1000
COUNTER_COLUMNS = ("positives", "trending", "trending_ts", "views", "bounces", "completes")


# Largest exponent a float survives (e^709): timestamps far apart (a bad client clock, a
# replayed historical log next to live events) must saturate, not raise OverflowError.
MAX_EXPONENT = 700.0


def decay_factor(dt_seconds: float, half_life_seconds: float) -> float:
    """0.5 ** (dt / half_life); ``dt`` may be negative for an out-of-order event."""
    half_lives = max(dt_seconds / half_life_seconds, -MAX_EXPONENT / math.log(2))
    return math.pow(0.5, half_lives)


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
        # The counters ranking reads, as rows of one table (row 0: an item without
        # events); written before the row is published, so readers need no lock.
        self._row_of: dict[str, int] = {}
        self._table = np.zeros((1024, len(COUNTER_COLUMNS)), dtype=np.float64)
        self._rate = math.log(2.0) / self.half_life_s
        # best items by time-free key; every item outside has key <= _floor
        self._leaders: dict[str, float] = {}
        self._floor = -math.inf
        self._ranked: list[tuple[str, float]] | None = None  # _leaders, sorted
        self._ranked_at = -math.inf
        self._dirty = False

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
                self._lead(item_id, c)
            self._store_row(item_id, c)

    def _store_row(self, item_id: str, c: ItemCounters) -> None:
        row = self._row_of.get(item_id)
        if row is None:
            row = len(self._row_of) + 1
            if row >= self._table.shape[0]:
                grown = np.zeros((2 * self._table.shape[0], self._table.shape[1]))
                grown[: self._table.shape[0]] = self._table
                self._table = grown
        self._table[row] = (c.positives, c.trending, c.trending_ts, c.views, c.bounces,
                            c.completes)
        self._row_of[item_id] = row

    def table(self, item_ids: Sequence[str]) -> np.ndarray:
        """``COUNTER_COLUMNS`` of each item, zeros for an item without events."""
        rows = np.fromiter(map(self._row_of.get, item_ids, repeat(0)), dtype=np.int64,
                           count=len(item_ids))
        return self._table[rows]

    def _lead(self, item_id: str, c: ItemCounters) -> None:
        """Keep ``_leaders`` holding every item whose key beats ``_floor``."""
        if c.trending <= 0:
            return
        key = math.log(c.trending) + c.trending_ts * self._rate
        if key <= self._floor and item_id not in self._leaders:
            return
        self._leaders[item_id] = key
        self._dirty = True
        if len(self._leaders) > 2 * TRENDING_KEPT:
            kept = heapq.nlargest(TRENDING_KEPT + 1, self._leaders.items(), key=lambda kv: kv[1])
            self._floor = max(self._floor, kept[-1][1])
            self._leaders = dict(kept[:TRENDING_KEPT])

    def popularity(self, item_id: str) -> int:
        c = self._items.get(item_id)
        return c.positives if c else 0

    def trending_score(self, item_id: str, now: float) -> float:
        c = self._items.get(item_id)
        if c is None or c.trending <= 0:
            return 0.0
        return c.trending * decay_factor(now - c.trending_ts, self.half_life_s)

    def top_trending(
        self, n: int, now: float, refresh_seconds: float = 1.0,
        skip: Collection[str] = (),
    ) -> list[tuple[str, float]]:
        """Top ``n`` items not in ``skip`` by trending score decayed to ``now``, best
        first; the order is at most ``refresh_seconds`` of the clock behind the events."""
        with self._lock:
            ranked = self._ranked
            if ranked is None or (self._dirty and not 0 <= now - self._ranked_at
                                  < refresh_seconds):
                ranked = self._ranked = sorted(
                    self._leaders.items(), key=lambda kv: kv[1], reverse=True)
                self._ranked_at, self._dirty = now, False
        out: list[tuple[str, float]] = []
        shift = now * self._rate
        for item_id, key in ranked:
            if item_id not in skip:
                out.append((item_id, math.exp(min(key - shift, MAX_EXPONENT))))
                if len(out) >= n:
                    return out
        if self._floor > -math.inf:  # past the leaders (a user who has seen thousands)
            return self._scan(n, now, skip)
        return out

    def _scan(self, n: int, now: float, skip: Collection[str]) -> list[tuple[str, float]]:
        with self._lock:
            scored = [
                (item_id, c.trending * decay_factor(now - c.trending_ts, self.half_life_s))
                for item_id, c in self._items.items() if c.trending > 0 and item_id not in skip
            ]
        return heapq.nlargest(n, scored, key=lambda kv: kv[1])

    def all_positive_counts(self) -> dict[str, int]:
        return {k: v.positives for k, v in self._items.items() if v.positives}

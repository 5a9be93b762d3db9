"""Item-to-item co-visitation: items that users engage with in the same session.

A session ends after ``session_gap_minutes`` without events. Each positive interaction
pairs the item with the last ``window`` positives of the same session (both directions);
per item only the strongest ``neighbours`` are kept, so memory stays bounded.
"""

from __future__ import annotations

import heapq
import threading


class CoVisitation:
    def __init__(self, window: int = 20, neighbours: int = 100) -> None:
        self.window = window
        self.neighbours = neighbours
        self._pairs: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()

    def add_session_positive(self, session_items: list[str], item_id: str) -> None:
        """Pair ``item_id`` with the session's earlier positives, then append it."""
        with self._lock:
            for other in session_items[-self.window:]:
                if other == item_id:
                    continue
                self._bump(other, item_id)
                self._bump(item_id, other)
        if item_id not in session_items[-self.window:]:
            session_items.append(item_id)
            del session_items[: -self.window]

    def add_pairs(self, pairs: list[tuple[str, str]]) -> None:
        """Bumps counted where the sessions are (``recommender.stream``: the event worker
        that owns the user), each ``(a, b)`` as ``add_session_positive`` makes them."""
        with self._lock:
            for a, b in pairs:
                self._bump(a, b)

    def _bump(self, a: str, b: str) -> None:
        row = self._pairs.setdefault(a, {})
        row[b] = row.get(b, 0.0) + 1.0
        if len(row) > 2 * self.neighbours:
            kept = heapq.nlargest(self.neighbours, row.items(), key=lambda kv: kv[1])
            self._pairs[a] = dict(kept)

    def neighbours_of(self, item_id: str, n: int) -> list[tuple[str, float]]:
        row = self._pairs.get(item_id)
        if not row:
            return []
        return heapq.nlargest(n, row.items(), key=lambda kv: kv[1])

    def __len__(self) -> int:
        return len(self._pairs)

"""Served feed rows waiting for their outcome: the online ranker's training data.

Kept apart from ``recommender.online_ranker`` so that ``OnlineState.apply`` can label rows
as events arrive without importing the ranking code.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

POSITIVE_OUTCOMES = frozenset({"complete", "replay", "like", "share", "save", "comment"})
NEGATIVE_OUTCOMES = frozenset({"skip", "hide", "report"})


def label_of(event_type: str, watch_ratio: float | None, bounce: bool) -> int | None:
    """The outcome an event gives a served row (None: not an outcome)."""
    if event_type in POSITIVE_OUTCOMES:
        return 1
    if event_type in NEGATIVE_OUTCOMES:
        return 0
    if event_type == "view":
        if bounce:
            return 0
        return 1 if (watch_ratio if watch_ratio is not None else 0.5) >= 0.5 else 0
    return None


@dataclass
class _Pending:
    row: np.ndarray
    ts: float


class ImpressionLog:
    """Served rows waiting for their outcome, and labelled rows waiting for training."""

    def __init__(self, window_seconds: float, max_pending: int = 200_000) -> None:
        self.window_seconds = window_seconds
        self.max_pending = max_pending
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._labelled: list[tuple[np.ndarray, int, float]] = []
        self._lock = threading.Lock()

    def record(self, user_id: str, item_ids: list[str], rows: np.ndarray, ts: float) -> None:
        with self._lock:
            for item_id, row in zip(item_ids, rows, strict=True):
                self._pending[(user_id, item_id)] = _Pending(row, ts)
            while len(self._pending) > self.max_pending:  # oldest first (insertion order)
                key = next(iter(self._pending))
                old = self._pending.pop(key)
                self._labelled.append((old.row, 0, old.ts))

    def outcome(self, user_id: str, item_id: str, label: int) -> bool:
        with self._lock:
            pending = self._pending.pop((user_id, item_id), None)
            if pending is None:
                return False
            self._labelled.append((pending.row, label, pending.ts))
            return True

    def expire(self, now: float) -> int:
        """Rows shown longer ago than the window without an outcome: labelled 0."""
        with self._lock:
            old = [k for k, p in self._pending.items() if now - p.ts > self.window_seconds]
            for key in old:
                p = self._pending.pop(key)
                self._labelled.append((p.row, 0, p.ts))
            return len(old)

    def take(self) -> list[tuple[np.ndarray, int, float]]:
        with self._lock:
            out, self._labelled = self._labelled, []
        return out

    def __len__(self) -> int:
        return len(self._pending)

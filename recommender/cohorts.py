"""User cohorts: k-means over user vectors, and what each cohort engages with.

Refreshed at most every ``cohort_refresh_seconds`` (from the event path, never the feed
path). A cohort's popularity is the time-decayed positive feedback of its members'
recent positives. A user without a vector is served the largest cohort's list, which is
what a new user most likely resembles.
"""

from __future__ import annotations

import heapq
import threading

import numpy as np

from recommender.popularity import decay_factor
from recommender.profiles import ProfileStore, UserProfile
from recommender.settings import RecommenderSettings


class Cohorts:
    def __init__(self, settings: RecommenderSettings) -> None:
        self.settings = settings
        self.half_life_s = settings.trending_half_life_hours * 3600.0
        self.centroids: np.ndarray | None = None
        self.sizes: np.ndarray | None = None
        self._top: list[list[tuple[str, float]]] = []
        self._last_refresh: float | None = None
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self.centroids is not None

    def maybe_refresh(self, profiles: ProfileStore, now: float) -> bool:
        due = self._last_refresh is None or (
            now - self._last_refresh >= self.settings.cohort_refresh_seconds
        )
        return self.refresh(profiles, now) if due else False

    def refresh(self, profiles: ProfileStore, now: float) -> bool:
        import faiss

        user_ids, vectors = profiles.vectors()
        if vectors is None or len(user_ids) < self.settings.cohort_min_users:
            return False
        k = max(1, min(self.settings.cohort_count, len(user_ids) // 4))
        kmeans = faiss.Kmeans(
            vectors.shape[1], k, niter=20, seed=self.settings.seed, spherical=True,
            min_points_per_centroid=1, max_points_per_centroid=100_000,
        )
        kmeans.train(np.ascontiguousarray(vectors, dtype=np.float32))
        _, assign = kmeans.index.search(vectors, 1)
        scores: list[dict[str, float]] = [{} for _ in range(k)]
        for user_id, cohort in zip(user_ids, assign[:, 0], strict=True):
            profile = profiles.get(user_id)
            if profile is None:
                continue
            bucket = scores[int(cohort)]
            for item_id, ts in list(profile.recent_positives):
                bucket[item_id] = bucket.get(item_id, 0.0) + decay_factor(
                    now - ts, self.half_life_s)
        top = [heapq.nlargest(500, b.items(), key=lambda kv: kv[1]) for b in scores]
        with self._lock:
            self.centroids = np.ascontiguousarray(kmeans.centroids, dtype=np.float32)
            self.sizes = np.bincount(assign[:, 0], minlength=k)
            self._top = top
            self._last_refresh = now
        return True

    def fitted(self) -> tuple[np.ndarray, np.ndarray, list[list[tuple[str, float]]],
                              float] | None:
        """What ``refresh`` fitted (centroids, sizes, top items per cohort, when), or None;
        ``install`` puts it into another process's ``Cohorts``."""
        with self._lock:
            if self.centroids is None or self.sizes is None or self._last_refresh is None:
                return None
            return self.centroids, self.sizes, self._top, self._last_refresh

    def install(self, centroids: np.ndarray, sizes: np.ndarray,
                top: list[list[tuple[str, float]]], fitted_at: float) -> None:
        """Serve cohorts fitted elsewhere (``recommender.stream``: by an event worker,
        over every profile in Redis)."""
        with self._lock:
            self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
            self.sizes = np.asarray(sizes)
            self._top = top
            self._last_refresh = fitted_at

    def cohort_of(self, profile: UserProfile | None) -> int | None:
        if self.centroids is None or self.sizes is None:
            return None
        vec = profile.vector if profile is not None else None
        if vec is None or vec.shape[0] != self.centroids.shape[1]:
            return int(np.argmax(self.sizes))
        return int(np.argmax(self.centroids @ vec))

    def top(self, cohort: int, n: int) -> list[tuple[str, float]]:
        if cohort >= len(self._top):
            return []
        return self._top[cohort][:n]

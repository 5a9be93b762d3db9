"""Cohorts over every profile in Redis: fitted by one event worker, served by every replica.

``Cohorts.refresh`` clusters every user vector, which a replica reading profiles from
Redis does not hold. The worker that owns partition 0 reads all profiles every
``cohort_refresh_seconds`` (a SCAN and MGET a partition), fits the cohorts with the
embedded code and stores what it fitted; replicas poll its timestamp and install it.
"""

from __future__ import annotations

import logging
from typing import cast

import msgpack
import numpy as np

from recommender.cohorts import Cohorts
from recommender.profiles import ProfileStore, UserProfile
from recommender.settings import RecommenderSettings
from recommender.stream.codec import decode_profile
from recommender.stream.connection import RedisClient, mget
from recommender.stream.layout import StreamLayout

log = logging.getLogger(__name__)
READ_CHUNK = 1000


class ProfileSnapshot(ProfileStore):
    """Profiles read from Redis at one moment, for one fit."""

    def __init__(self, settings: RecommenderSettings, profiles: dict[str, UserProfile]) -> None:
        super().__init__(settings.profile)
        self._profiles = profiles


def read_all_profiles(client: RedisClient, layout: StreamLayout,
                      settings: RecommenderSettings) -> ProfileSnapshot:
    half_life_s = settings.profile.half_life_hours * 3600.0
    profiles: dict[str, UserProfile] = {}
    for partition in range(layout.partitions):
        prefix = layout.profiles_of(partition)[:-1]
        keys = list(client.scan_iter(match=layout.profiles_of(partition), count=READ_CHUNK))
        for start in range(0, len(keys), READ_CHUNK):
            chunk = keys[start:start + READ_CHUNK]
            for key, raw in zip(chunk, cast(list, mget(client, chunk)), strict=True):
                if raw is not None:
                    user_id = key.decode()[len(prefix):]
                    profiles[user_id] = decode_profile(
                        raw, user_id, half_life_s, settings.profile.recent_positives)
    return ProfileSnapshot(settings, profiles)


def fit_and_store(client: RedisClient, layout: StreamLayout, settings: RecommenderSettings,
                  now: float) -> bool:
    """Fit cohorts over every profile; False when too few users have vectors."""
    cohorts = Cohorts(settings)
    if not cohorts.refresh(read_all_profiles(client, layout, settings), now):
        return False
    fitted = cohorts.fitted()
    assert fitted is not None
    centroids, sizes, top, fitted_at = fitted
    body = msgpack.packb({
        "centroids": centroids.astype(np.float32).tobytes(), "dim": int(centroids.shape[1]),
        "sizes": [int(n) for n in sizes], "top": top, "fitted_at": fitted_at,
    }, use_bin_type=True)
    pipe = client.pipeline(transaction=True)
    pipe.set(layout.cohorts, body)
    pipe.set(layout.cohorts_fitted_at, repr(fitted_at))
    pipe.execute()
    return True


class CohortFollower:
    """A replica's side: installs newly fitted cohorts into its ``Cohorts``."""

    def __init__(self, client: RedisClient, layout: StreamLayout, cohorts: Cohorts) -> None:
        self.client, self.layout, self.cohorts = client, layout, cohorts
        self.installed: bytes | None = None

    def poll(self) -> bool:
        stamp = cast("bytes | None", self.client.get(self.layout.cohorts_fitted_at))
        if stamp is None or stamp == self.installed:
            return False
        raw = cast("bytes | None", self.client.get(self.layout.cohorts))
        if raw is None:
            return False
        body = msgpack.unpackb(raw, raw=False)
        centroids = np.frombuffer(body["centroids"], dtype=np.float32).reshape(-1, body["dim"])
        top = [[(str(item), float(score)) for item, score in cohort] for cohort in body["top"]]
        self.cohorts.install(centroids, np.asarray(body["sizes"]), top, body["fitted_at"])
        self.installed = stamp
        return True

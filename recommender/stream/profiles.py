"""``RedisProfiles``: the ``ProfileStore`` a feed replica reads when profiles live in Redis.

The feed asks for one user's profile per request: one GET. Writes are the event
workers' (``recommender.stream.worker``), so this store holds nothing in process: a
replica's memory no longer grows with the number of users.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import redis

from recommender.profiles import ProfileStore, UserProfile
from recommender.settings import ProfileSettings
from recommender.stream.codec import decode_profile
from recommender.stream.faults import redis_faults
from recommender.stream.layout import StreamLayout


class RedisProfiles(ProfileStore):
    def __init__(self, client: redis.Redis, layout: StreamLayout,
                 settings: ProfileSettings) -> None:
        super().__init__(settings)
        self.client = client
        self.layout = layout

    def decode(self, user_id: str, raw: bytes | None) -> UserProfile | None:
        if raw is None:
            return None
        return decode_profile(raw, user_id, self.half_life_s, self.settings.recent_positives)

    def get(self, user_id: str) -> UserProfile | None:
        # bytes: the clients here never set decode_responses
        with redis_faults("reading a profile"):
            raw = cast("bytes | None", self.client.get(self.layout.profile(user_id)))
        return self.decode(user_id, raw)

    def get_or_create(self, user_id: str) -> UserProfile:
        raise TypeError("profiles in Redis are written by the event workers "
                        "(reelsift worker events), not by the feed")

    # Cohorts and listings scan every profile: not on a replica (they would read all of
    # Redis); a replica's cohort channel stays empty.
    def __len__(self) -> int:
        return 0

    def users(self) -> list[str]:
        return []

    def vectors(self) -> tuple[list[str], np.ndarray | None]:
        return [], None

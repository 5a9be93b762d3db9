"""``RedisProfiles``: the ``ProfileStore`` a feed replica reads when profiles live in Redis.

The feed asks for one user's profile per request: one GET. Writes are the event
workers' (``recommender.stream.worker``), so this store holds no profile of its own: a
replica's memory no longer grows with the number of users. What it keeps is a bounded
LRU of the last decoded profiles with the bytes they came from: when the GET returns the
same bytes, the decoded profile is reused (decoding builds every set, map and deque of
the profile anew, most of what a Redis-profile feed cost beyond an in-process one).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import cast

import numpy as np

from recommender.profiles import ProfileStore, UserProfile
from recommender.settings import ProfileSettings
from recommender.stream.codec import decode_profile
from recommender.stream.connection import RedisClient
from recommender.stream.faults import redis_faults
from recommender.stream.layout import StreamLayout


class RedisProfiles(ProfileStore):
    def __init__(self, client: RedisClient, layout: StreamLayout,
                 settings: ProfileSettings, decoded_kept: int = 10_000) -> None:
        super().__init__(settings)
        self.client = client
        self.layout = layout
        self.decoded_kept = decoded_kept
        self._decoded: OrderedDict[str, tuple[bytes, UserProfile]] = OrderedDict()
        self._lock = threading.Lock()

    def decode(self, user_id: str, raw: bytes | None) -> UserProfile | None:
        if raw is None:
            return None
        with self._lock:
            kept = self._decoded.get(user_id)
            if kept is not None and kept[0] == raw:
                self._decoded.move_to_end(user_id)
                return kept[1]
        # A profile object is only read by the feed (as the embedded store's long-lived
        # ones are), so one decoded from the same bytes can serve again.
        profile = decode_profile(raw, user_id, self.half_life_s,
                                 self.settings.recent_positives)
        with self._lock:
            self._decoded[user_id] = (raw, profile)
            self._decoded.move_to_end(user_id)
            while len(self._decoded) > self.decoded_kept:
                self._decoded.popitem(last=False)
        return profile

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

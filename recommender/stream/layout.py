"""Key names of the shared stream and online store.

Every key of one partition carries the partition's hash tag (``{ns:p}``), so the scripts
that touch a partition's stream, profiles and markers together stay in one slot on Redis
Cluster; nothing ever needs keys of two partitions in one command. The two cohort keys,
written together, share their own tag. Keys read or written alone (the worker registry,
the item-change channel) need none.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

GROUP = "profile-appliers"


@dataclass(frozen=True)
class StreamLayout:
    namespace: str = "reelsift"
    partitions: int = 16

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError("partitions must be at least 1")

    def partition_of(self, user_id: str) -> int:
        # crc32, not hash(): every process must agree, whatever its PYTHONHASHSEED.
        return zlib.crc32(user_id.encode()) % self.partitions

    def _tag(self, partition: int) -> str:
        return f"{self.namespace}:{{{self.namespace}:{partition}}}"

    def stream(self, partition: int) -> str:
        return f"{self._tag(partition)}:events"

    def covisits(self, partition: int) -> str:
        """Co-visitation bumps the partition's owner counted (it holds the sessions)."""
        return f"{self._tag(partition)}:covisits"

    def owner(self, partition: int) -> str:
        return f"{self._tag(partition)}:owner"

    def profile(self, user_id: str) -> str:
        return f"{self._tag(self.partition_of(user_id))}:profile:{user_id}"

    def accepted(self, partition: int, event_id: str) -> str:
        return f"{self._tag(partition)}:accepted:{event_id}"

    def applied(self, partition: int, event_id: str) -> str:
        return f"{self._tag(partition)}:applied:{event_id}"

    def profiles_of(self, partition: int) -> str:
        """SCAN pattern of the partition's profile keys (braces are literal in globs)."""
        return f"{self._tag(partition)}:profile:*"

    # The cohorts and their timestamp are written in one MULTI: one hash tag, one slot.
    @property
    def cohorts(self) -> str:
        return f"{self.namespace}:{{{self.namespace}:cohorts}}"

    @property
    def cohorts_fitted_at(self) -> str:
        return f"{self.namespace}:{{{self.namespace}:cohorts}}:fitted-at"

    @property
    def workers(self) -> str:
        return f"{self.namespace}:workers"

    @property
    def item_changes(self) -> str:
        return f"{self.namespace}:item-changes"

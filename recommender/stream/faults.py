"""Redis out of reach is a passing fault: 503 with Retry-After (``ServiceUnavailable``),
as for the database and the model services, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis

from core.errors import ServiceUnavailable

RETRY_AFTER_S = 2
# Passing on one server (down, slow, loading its data) and on a cluster (a slot without a
# reachable primary during a failover, keys being migrated: redis-py retries these a few
# times before giving up).
PASSING_FAULTS: tuple[type[Exception], ...] = (
    redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError,
    redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
)


@contextmanager
def redis_faults(doing: str) -> Iterator[None]:
    try:
        yield
    except PASSING_FAULTS as exc:
        raise ServiceUnavailable(f"Redis is briefly unavailable while {doing}; nothing was "
                                 "lost, retry the request", retry_after_s=RETRY_AFTER_S,
                                 reason=str(exc)) from exc

"""Redis out of reach is a passing fault: 503 with Retry-After (``ServiceUnavailable``),
as for the database and the model services, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis

from core.errors import ServiceUnavailable

RETRY_AFTER_S = 2


@contextmanager
def redis_faults(doing: str) -> Iterator[None]:
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
        raise ServiceUnavailable(f"Redis is briefly unavailable while {doing}; nothing was "
                                 "lost, retry the request", retry_after_s=RETRY_AFTER_S,
                                 reason=str(exc)) from exc

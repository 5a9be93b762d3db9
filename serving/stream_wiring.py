"""Wiring of the Redis stream and online store (``recommender.stream``) from ``Settings``.

Apart from ``serving.wiring`` so that ``reelsift worker events`` imports no analyzer or
model code: a worker starts in seconds and holds no model.
"""

from __future__ import annotations

from core.errors import InvalidConfig
from core.storage.db import make_engine, make_session_factory, upgrade
from recommender.stream.online import RedisOnline
from recommender.stream.worker import EventWorker, open_worker
from serving.settings import Settings


def redis_online(settings: Settings) -> RedisOnline | None:
    """Profiles, events and item changes on Redis when ``redis_url`` is set."""
    if not settings.redis_url:
        return None
    return RedisOnline.connect(settings.redis_url, namespace=settings.redis_namespace,
                               partitions=settings.stream_partitions,
                               dedup_seconds=settings.stream_dedup_seconds,
                               cluster=settings.redis_cluster)


def build_event_worker(settings: Settings, name: str | None = None) -> EventWorker:
    """``reelsift worker events``: the database's catalog and Redis, no models."""
    online = redis_online(settings)
    if online is None:
        raise InvalidConfig("reelsift worker events needs REELSIFT_REDIS_URL")
    engine = make_engine(settings.db_url)
    upgrade(engine)
    return open_worker(
        make_session_factory(engine),
        settings.recommender.model_copy(update={"index_dir": settings.index_dir}),
        online.client, online.layout, name=name,
        applied_ttl_s=settings.stream_dedup_seconds,
    )

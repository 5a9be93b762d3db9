"""``RedisOnline``: what a feed replica needs from Redis, built from one URL."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from core.storage.items import ItemStore
from recommender.catalog import Catalog
from recommender.settings import ProfileSettings
from recommender.state import OnlineState
from recommender.stream.connection import RedisClient, connect
from recommender.stream.items import ItemChangeBus
from recommender.stream.layout import StreamLayout
from recommender.stream.log import RedisEventLog
from recommender.stream.profiles import RedisProfiles


@dataclass
class RedisOnline:
    client: RedisClient
    layout: StreamLayout
    bus: ItemChangeBus
    dedup_seconds: int = 3_600
    log: RedisEventLog | None = None

    @classmethod
    def connect(cls, url: str, *, namespace: str = "reelsift", partitions: int = 16,
                dedup_seconds: int = 3_600, cluster: bool = False) -> RedisOnline:
        """``cluster``: ``url`` names a node of a Redis Cluster (``connection``)."""
        client = connect(url, cluster=cluster, health_check_interval=30)
        client.ping()  # a wrong URL fails at start, not on the first feed
        layout = StreamLayout(namespace, partitions)
        return cls(client, layout, ItemChangeBus(client, layout), dedup_seconds)

    def event_log(self, sessions: sessionmaker[Session],
                  state: OnlineState | None) -> RedisEventLog:
        """The log a replica ingests into; it folds everyone's events into ``state``'s
        item counters on a thread, so feed requests read Redis only for the profile.
        ``state`` None: append only (``reelsift import-events``)."""
        self.log = RedisEventLog(self.client, self.layout, sessions, state,
                                 dedup_seconds=self.dedup_seconds)
        if state is not None:
            self.log.follow()
        return self.log

    def profiles(self, settings: ProfileSettings) -> RedisProfiles:
        return RedisProfiles(self.client, self.layout, settings)

    def attach(self, catalog: Catalog, item_store: ItemStore | None) -> None:
        """Publish this process's item changes; apply everyone's to ``catalog``."""
        if item_store is not None:
            item_store.subscribe(self.bus.publish)
        self.bus.listen(catalog)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
        self.bus.close()
        self.client.close()

"""Takedowns and approvals published to every replica at once (Redis pub/sub).

Each process publishes the item state changes it commits (an ``ItemStore`` listener);
every replica listens and drops a taken-down item from its catalog, or reads an approved
one from the database, as the message arrives instead of at its next database poll.
Pub/sub delivers only to replicas connected at that moment: a replica that was
reconnecting misses the message, so the poll (``Catalog.follow``) and the check of each
feed page against ``items.state`` (``Catalog.confirm_approved``) stay as they are, the
last line of defence.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence

import redis

from core.contracts import ItemState
from core.storage.items import StateChange
from recommender.catalog import Catalog
from recommender.stream.connection import RedisClient
from recommender.stream.layout import StreamLayout

log = logging.getLogger(__name__)


class ItemChangeBus:
    def __init__(self, client: RedisClient, layout: StreamLayout) -> None:
        self.client = client
        self.layout = layout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pubsub: redis.client.PubSub | None = None
        self.received = 0

    def publish(self, changes: Sequence[StateChange]) -> None:
        """``ItemStore`` listener: runs after the changes committed."""
        for change in changes:
            message = json.dumps({"item_id": change.item_id, "state": change.after.value})
            try:
                self.client.publish(self.layout.item_changes, message)
            except redis.RedisError as exc:  # the others' poll and page check still see it
                log.warning("could not publish the change of %s: %s", change.item_id, exc)

    def apply(self, catalog: Catalog, message: bytes | str) -> None:
        body = json.loads(message)
        item_id, state = str(body["item_id"]), str(body["state"])
        if state == ItemState.APPROVED.value:
            catalog.follow()  # reads it (and anything else changed) from the database
        else:
            catalog.remove(item_id)
        self.received += 1

    def listen(self, catalog: Catalog) -> None:
        """Apply published changes to ``catalog`` on a background thread."""
        if self._thread is not None:
            return
        pubsub = self._pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(self.layout.item_changes)

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None and message["type"] == "message":
                        self.apply(catalog, message["data"])
                except redis.ConnectionError as exc:
                    log.warning("item change subscription lost (%s); resubscribing", exc)
                    self._stop.wait(1.0)
                except Exception:  # one bad message must not end the subscription
                    log.exception("could not apply an item change")

        self._thread = threading.Thread(target=loop, name="item-changes", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._pubsub is not None:
            self._pubsub.close()

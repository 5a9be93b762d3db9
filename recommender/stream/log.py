"""``RedisEventLog``: the API appends events to partitioned Redis Streams.

Appending is one Lua call per partition touched (pipelined: one round trip per batch):
an event is added only if its ``accepted`` marker was not set within ``dedup_seconds``,
so a batch posted twice, or to two replicas, is streamed once and the response counts
the duplicates as the database log does. Profiles are the workers' job
(``recommender.stream.worker``); ``catch_up`` folds every partition's new entries into
this process's item-level state (``OnlineState.apply_to_items``): counters, trending,
co-engagement and the labels of the feed rows this process served.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack
import redis
from sqlalchemy.orm import Session, sessionmaker

from core.contracts import Event
from recommender.events import IngestResult, parse_events
from recommender.state import OnlineState
from recommender.stream.codec import decode_event, encode_event
from recommender.stream.cohorts import CohortFollower
from recommender.stream.connection import LuaScript, RedisClient, stream_entries, xread
from recommender.stream.faults import redis_faults
from recommender.stream.layout import GROUP, StreamLayout

READ_CHUNK = 5000
COHORT_POLL_S = 5.0
log = logging.getLogger(__name__)

# KEYS[1] the partition's stream, KEYS[2..] accepted markers; ARGV[1] dedup seconds,
# ARGV[2] approximate stream length kept, ARGV[3..] the events (same order as markers).
APPEND = """
local added = 0
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[1]) then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'e', ARGV[i + 1])
    added = added + 1
  end
end
return added
"""


def ensure_groups(client: RedisClient, layout: StreamLayout) -> None:
    """The consumer group of every partition, reading from the start of its stream
    (events appended before any worker ran are applied too)."""
    for partition in range(layout.partitions):
        try:
            client.xgroup_create(layout.stream(partition), GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


class RedisEventLog:
    def __init__(
        self, client: RedisClient, layout: StreamLayout, sessions: sessionmaker[Session],
        state: OnlineState | None, *, dedup_seconds: int = 3_600,
        max_stream_length: int = 1_000_000, counters_only: bool = False,
    ) -> None:
        """``state`` None: append only (an import, a benchmark's client side).
        ``counters_only``: fold the item counters alone (an event worker's tail: no
        co-engagement histories, no refits, no training labels)."""
        self.client = client
        self.layout = layout
        self.sessions = sessions  # experiments read exposures and events there
        self.state = state
        self.dedup_seconds = dedup_seconds
        self.max_stream_length = max_stream_length
        self.counters_only = counters_only
        self._append = LuaScript(client, APPEND)
        self._positions = {layout.stream(p): "0-0" for p in range(layout.partitions)}
        if not counters_only:  # co-visitation bumps the workers counted
            self._positions.update(
                {layout.covisits(p): "0-0" for p in range(layout.partitions)})
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None
        # cohorts an event worker fitted over every profile (recommender.stream.cohorts)
        self._cohorts = (CohortFollower(client, layout, state.cohorts)
                         if state is not None and not counters_only else None)
        self._next_cohort_poll = 0.0
        ensure_groups(client, layout)

    def ingest(self, events: Sequence[Event | Mapping[str, Any]]) -> IngestResult:
        parsed = parse_events(events)
        unique = list({e.event_id: e for e in parsed}.values())
        by_partition: dict[int, list[Event]] = {}
        for event in unique:
            by_partition.setdefault(self.layout.partition_of(event.user_id), []).append(event)
        pipe = self.client.pipeline(transaction=False)
        for partition, batch in by_partition.items():
            keys = [self.layout.stream(partition)] + [
                self.layout.accepted(partition, e.event_id) for e in batch]
            args: list[Any] = [self.dedup_seconds, self.max_stream_length] + [
                encode_event(e) for e in batch]
            self._append(keys, args, pipe)
        with redis_faults("appending events"):
            stored = sum(int(n) for n in pipe.execute()) if by_partition else 0
        return IngestResult(received=len(parsed), stored=stored,
                            duplicates=len(parsed) - stored)

    def catch_up(self) -> int:
        """Apply the item-level half of every entry appended since the last call; with
        ``follow`` running, nothing (the thread applies them as they arrive), so a feed
        request makes no round trip for it."""
        if self._follower is not None:
            return 0
        return self._drain()

    def follow(self, idle_s: float = 0.01) -> None:
        """Fold new entries on a background thread, ``idle_s`` after finding none.
        (Polling, not a blocking XREAD over every stream: that command would span
        slots on Redis Cluster.)"""
        if self._follower is not None:
            return

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    if not self._drain():
                        self._stop.wait(idle_s)
                except redis.RedisError as exc:  # retried; feeds go on meanwhile
                    log.warning("could not read the event streams: %s", exc)
                    self._stop.wait(1.0)
                except Exception:
                    log.exception("could not apply streamed events")
                    self._stop.wait(1.0)

        self._follower = threading.Thread(target=loop, name="event-stream", daemon=True)
        self._follower.start()

    def close(self) -> None:
        self._stop.set()
        if self._follower is not None:
            self._follower.join(timeout=5)

    def _drain(self) -> int:
        if self._cohorts is not None and time.monotonic() >= self._next_cohort_poll:
            self._next_cohort_poll = time.monotonic() + COHORT_POLL_S
            self._cohorts.poll()
        state = self.state
        if state is None:
            return 0
        applied = 0
        with self._lock:
            while True:
                pipe = self.client.pipeline(transaction=False)
                streams = list(self._positions)
                for stream in streams:
                    xread(pipe, stream, self._positions[stream], READ_CHUNK)
                read = 0
                for stream, reply in zip(streams, pipe.execute(), strict=True):
                    for entry_id, fields in stream_entries(reply):
                        if b"pairs" in fields:
                            state.covisitation.add_pairs(
                                [(a, b) for a, b in msgpack.unpackb(fields[b"pairs"])])
                        else:
                            state.apply_to_items(decode_event(fields[b"e"]),
                                                 counters_only=self.counters_only)
                        self._positions[stream] = entry_id.decode()
                        read += 1
                applied += read
                if read == 0:
                    break
        if applied and not self.counters_only:
            state.collaborative.maybe_refresh(background=state.settings.background_refits)
        return applied

    def count(self) -> int:
        """Entries held in the streams (bounded by ``max_stream_length`` each)."""
        pipe = self.client.pipeline(transaction=False)
        for partition in range(self.layout.partitions):
            pipe.xlen(self.layout.stream(partition))
        return sum(int(n) for n in pipe.execute())

"""Event workers (``reelsift worker events``): profiles applied once per event, in Redis.

Partitioning: ``partitions`` streams keyed by a hash of the user id, each read by one
worker at a time. A consumer group alone hands one stream's entries to its consumers in
turn, so two workers would apply one user's events concurrently, racing on the profile
(read, change, write back) and applying them out of order. Here each partition is owned
by lease (``SET owner NX PX``, renewed every ``lease_ms / 3``); live workers register in
a sorted set and each takes ``ceil(partitions / live)``, so a second worker halves the
first one's share and a dead one's partitions move to the others once its leases expire.
The owner is a partition's only writer, so it keeps the profiles it applies in memory
and writes them back after each batch.

A batch: XREADGROUP (new entries) and XAUTOCLAIM (entries another consumer read but did
not acknowledge for ``min_idle_ms``: a crashed worker's) → one pipelined read of the
profiles not in memory and of each event's ``applied`` marker → ``apply_to_profile`` for
events without one (the embedded path's code) → the events stored in the database log
(``INSERT … ON CONFLICT DO NOTHING``, for reports and replays) → one Lua call per
partition that checks the lease is still ours and then writes the profiles, sets the
markers and XACKs the entries, atomically. A worker that lost its lease (paused past it)
commits nothing; the new owner applies those entries. An event is therefore applied
once: either its commit happened (marker set, entry acknowledged) or nothing of it did.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import msgpack
import redis
from sqlalchemy import Table
from sqlalchemy.orm import Session, sessionmaker

from core.contracts import Event
from core.storage.db import engine_of
from recommender.catalog import Catalog
from recommender.covisitation import CoVisitation
from recommender.profiles import UserProfile
from recommender.settings import RecommenderSettings
from recommender.state import OnlineState
from recommender.stream.codec import decode_event, decode_profile, encode_profile
from recommender.stream.cohorts import fit_and_store
from recommender.stream.connection import (
    LuaScript,
    RedisClient,
    mget,
    stream_entries,
    xreadgroup,
)
from recommender.stream.faults import PASSING_FAULTS
from recommender.stream.layout import GROUP, StreamLayout
from recommender.stream.log import RedisEventLog, ensure_groups
from recommender.tables import EventRow

log = logging.getLogger(__name__)
COHORT_RETRY_S = 10.0

# KEYS[1] owner, KEYS[2] stream, KEYS[3] co-visitation stream, then ARGV[4] profile
# keys, then applied markers; ARGV: [1] worker, [2] group, [3] marker seconds, [4]
# profile count, [5] co-visitation bumps ('' for none), [6] stream length kept, the
# profiles, the entry ids to acknowledge. -1: the lease is someone else's, nothing written.
COMMIT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local profiles = tonumber(ARGV[4])
for i = 1, profiles do redis.call('SET', KEYS[3 + i], ARGV[6 + i]) end
for i = 4 + profiles, #KEYS do redis.call('SET', KEYS[i], '1', 'EX', ARGV[3]) end
if ARGV[5] ~= '' then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', 'pairs', ARGV[5])
end
local ids = {}
for i = 7 + profiles, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then return 0 end
return redis.call('XACK', KEYS[2], ARGV[2], unpack(ids))
"""
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class EventArchive:
    """The database log of applied events (reports and replays read it), written by the
    workers: one executemany ``INSERT … ON CONFLICT (event_id) DO NOTHING`` a batch,
    compiled once (a multi-row VALUES statement is compiled anew for every batch, which
    cost more than applying the events)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        engine = engine_of(sessions)
        dialect = engine.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        else:  # pragma: no cover - the design supports these two
            raise ValueError(f"unsupported database dialect {dialect!r} for the event log")
        self.engine = engine
        self.statement = insert(cast(Table, EventRow.__table__)).on_conflict_do_nothing(
            index_elements=["event_id"])

    def insert(self, events: list[Event]) -> None:
        rows = [{
            "event_id": e.event_id, "user_id": e.user_id, "item_id": e.item_id,
            "type": e.type, "ts": e.ts if e.ts.tzinfo else e.ts.replace(tzinfo=UTC),
            "watch_ms": e.watch_ms, "item_duration_ms": e.item_duration_ms,
            "context": e.context, "received_at": now,
        } for now in [datetime.now(UTC)] for e in events]
        with self.engine.begin() as conn:
            conn.execute(self.statement, rows)


class PairRecorder(CoVisitation):
    """A worker's co-visitation: records the pairs ``add_session_positive`` bumps (the
    embedded code decides which) instead of counting them, so the commit can append
    them for every replica to count; the worker itself serves no feed."""

    def __init__(self, window: int, neighbours: int) -> None:
        super().__init__(window, neighbours)
        self.recorded: list[tuple[str, str]] = []

    def _bump(self, a: str, b: str) -> None:
        self.recorded.append((a, b))


@dataclass(slots=True)
class Entry:
    partition: int
    entry_id: str
    event: Event


@dataclass
class WorkerStats:
    applied: int = 0  # events applied to profiles
    duplicates: int = 0  # entries whose event_id was already applied
    claimed: int = 0  # entries taken over from another consumer
    lost_commits: int = 0  # batches not committed because the lease had moved


class EventWorker:
    def __init__(
        self, client: RedisClient, layout: StreamLayout, state: OnlineState, *,
        name: str | None = None, sessions: sessionmaker[Session] | None = None,
        item_log: RedisEventLog | None = None, batch: int = 1000, lease_ms: int = 5000,
        min_idle_ms: int | None = None, applied_ttl_s: int = 3_600,
        max_cached_profiles: int = 200_000, max_stream_length: int = 1_000_000,
    ) -> None:
        """``item_log``: this worker's tail of every partition, so the item counters its
        profile weights read (popularity, bounce rate) count everyone's events.
        ``sessions``: also store the events in the database log."""
        self.client = client
        self.layout = layout
        self.state = state
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.store = EventArchive(sessions) if sessions is not None else None
        self.item_log = item_log
        self.batch = batch
        self.lease_ms = lease_ms
        self.min_idle_ms = lease_ms if min_idle_ms is None else min_idle_ms
        self.applied_ttl_s = applied_ttl_s
        self.max_cached_profiles = max_cached_profiles
        self.max_stream_length = max_stream_length
        self.owned: set[int] = set()
        self._taken: set[int] = set()  # acquired since the last claim_stale
        self.stats = WorkerStats()
        self._cache: dict[str, UserProfile] = {}
        self._commit = LuaScript(client, COMMIT)
        self._renew = LuaScript(client, RENEW)
        self._release = LuaScript(client, RELEASE)
        self._next_rebalance = 0.0
        self._next_cohorts = 0.0
        self._cohort_thread: threading.Thread | None = None
        ensure_groups(client, layout)

    # -- partitions ---------------------------------------------------------------------
    def rebalance(self) -> None:
        """Renew our leases, then give up or take partitions towards a fair share."""
        layout, client = self.layout, self.client
        now_ms = int(time.time() * 1000)
        pipe = client.pipeline(transaction=False)
        pipe.zadd(layout.workers, {self.name: now_ms})
        pipe.zremrangebyscore(layout.workers, "-inf", now_ms - 3 * self.lease_ms)
        pipe.zcount(layout.workers, now_ms - self.lease_ms, "+inf")
        owned = sorted(self.owned)
        for p in owned:
            self._renew([layout.owner(p)], [self.name, self.lease_ms], pipe)
        replies = pipe.execute()
        for p, renewed in zip(owned, replies[3:], strict=True):
            if not renewed:
                log.warning("worker %s lost partition %d (lease expired)", self.name, p)
                self._drop(p)
        target = math.ceil(layout.partitions / max(1, int(replies[2])))
        if len(self.owned) > target:
            extra = sorted(self.owned)[target:]
            pipe = client.pipeline(transaction=False)
            for p in extra:
                self._release([layout.owner(p)], [self.name], pipe)
                self._drop(p)
            pipe.execute()
            return
        # Free partitions, starting at a place that differs between workers.
        start = sum(self.name.encode()) % layout.partitions
        order = [(start + i) % layout.partitions for i in range(layout.partitions)]
        candidates = deque(p for p in order if p not in self.owned)
        while len(self.owned) < target and candidates:
            tries = [candidates.popleft() for _ in range(min(target - len(self.owned),
                                                             len(candidates)))]
            pipe = client.pipeline(transaction=False)
            for p in tries:
                pipe.set(layout.owner(p), self.name, nx=True, px=self.lease_ms)
            for p, won in zip(tries, pipe.execute(), strict=True):
                if won:
                    self._drop(p)  # whatever we held of it before is stale
                    self.owned.add(p)
                    self._taken.add(p)

    def _drop(self, partition: int) -> None:
        self.owned.discard(partition)
        of = self.layout.partition_of
        for user_id in [u for u in self._cache if of(u) == partition]:
            del self._cache[user_id]

    def release_all(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        for p in sorted(self.owned):
            self._release([self.layout.owner(p)], [self.name], pipe)
        pipe.zrem(self.layout.workers, self.name)
        pipe.execute()
        self.owned.clear()
        self._cache.clear()

    # -- reading ------------------------------------------------------------------------
    def claim_stale(self) -> list[Entry]:
        """Entries of our partitions that a consumer read and did not acknowledge within
        ``min_idle_ms`` (it died, or its commit failed): now ours to apply."""
        entries: list[Entry] = []
        for p in sorted(self.owned):
            # A partition just taken over: everything its last owner left pending, at
            # once, so it is applied before newer entries (the user's order). Safe even
            # if that owner still runs: its commit checks the lease and is refused.
            min_idle = 0 if p in self._taken else self.min_idle_ms
            self._taken.discard(p)
            start = "0-0"
            while True:
                reply = self.client.xautoclaim(
                    self.layout.stream(p), GROUP, self.name, min_idle,
                    start_id=start, count=self.batch)
                start = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
                entries.extend(self._entries(p, reply[1]))
                if start == "0-0" or len(entries) >= self.batch:
                    break
        self.stats.claimed += len(entries)
        return entries

    def read_new(self) -> list[Entry]:
        owned = sorted(self.owned)
        if not owned:
            return []
        per = max(1, self.batch // len(owned))
        pipe = self.client.pipeline(transaction=False)
        for p in owned:
            xreadgroup(pipe, GROUP, self.name, self.layout.stream(p), per)
        entries: list[Entry] = []
        for p, reply in zip(owned, pipe.execute(), strict=True):
            entries.extend(self._entries(p, stream_entries(reply)))
        return entries

    @staticmethod
    def _entries(partition: int, rows: Any) -> list[Entry]:
        out = []
        for entry_id, fields in rows:
            if fields:  # None: trimmed away before it was claimed
                eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                out.append(Entry(partition, eid, decode_event(fields[b"e"])))
        return out

    # -- applying -----------------------------------------------------------------------
    def process(self, entries: list[Entry]) -> int:
        """Apply a batch and commit it; returns the events applied."""
        if not entries:
            return 0
        layout, state = self.layout, self.state
        # One MGET a partition (its keys share a slot) for the profiles not in memory
        # and one for the events' applied markers: one round trip for the batch.
        partitions = sorted({e.partition for e in entries})
        missing: dict[int, list[str]] = {p: [] for p in partitions}
        for user_id in dict.fromkeys(e.event.user_id for e in entries):
            if user_id not in self._cache:
                missing[layout.partition_of(user_id)].append(user_id)
        mine: dict[int, list[Entry]] = {p: [] for p in partitions}
        for e in entries:
            mine[e.partition].append(e)
        pipe = self.client.pipeline(transaction=False)
        for p in partitions:
            if missing[p]:
                mget(pipe, [layout.profile(u) for u in missing[p]])
            mget(pipe, [layout.applied(p, e.event.event_id) for e in mine[p]])
        replies = iter(pipe.execute())
        done_before: dict[tuple[int, str], bool] = {}
        for p in partitions:
            if missing[p]:
                for user_id, raw in zip(missing[p], next(replies), strict=True):
                    self._cache[user_id] = self._profile(user_id, raw)
            for e, marker in zip(mine[p], next(replies), strict=True):
                done_before[p, e.entry_id] = marker is not None
        fresh: list[Entry] = []
        seen_ids: set[str] = set()
        for e in entries:
            if done_before[e.partition, e.entry_id] or e.event.event_id in seen_ids:
                self.stats.duplicates += 1
                continue
            seen_ids.add(e.event.event_id)
            fresh.append(e)
        recorder = state.covisitation
        pairs: dict[int, list[tuple[str, str]]] = {}
        try:
            for e in fresh:
                before = len(recorder.recorded) if isinstance(recorder, PairRecorder) else 0
                state.apply_to_profile(self._cache[e.event.user_id], e.event)
                if isinstance(recorder, PairRecorder) and len(recorder.recorded) > before:
                    pairs.setdefault(e.partition, []).extend(recorder.recorded[before:])
            if self.store is not None and fresh:
                self.store.insert([e.event for e in fresh])
            committed = self._commit_batch(entries, fresh, pairs)
        except Exception:
            # The profiles in memory may hold changes that were not written back.
            self._cache.clear()
            raise
        finally:
            if isinstance(recorder, PairRecorder):
                recorder.recorded.clear()
        self.stats.applied += committed
        if len(self._cache) > self.max_cached_profiles:
            self._cache.clear()
        return committed

    def _profile(self, user_id: str, raw: bytes | None) -> UserProfile:
        settings = self.state.settings.profile
        half_life_s = settings.half_life_hours * 3600.0
        if raw is not None:
            return decode_profile(raw, user_id, half_life_s, settings.recent_positives)
        profile = UserProfile(user_id, half_life_s)
        profile.recent_positives = deque(maxlen=settings.recent_positives)
        return profile

    def _commit_batch(self, entries: list[Entry], fresh: list[Entry],
                      pairs: dict[int, list[tuple[str, str]]]) -> int:
        layout = self.layout
        partitions = sorted({e.partition for e in entries})
        pipe = self.client.pipeline(transaction=False)
        for p in partitions:
            changed = list(dict.fromkeys(e.event.user_id for e in fresh if e.partition == p))
            applied = [e.event.event_id for e in fresh if e.partition == p]
            keys = ([layout.owner(p), layout.stream(p), layout.covisits(p)]
                    + [layout.profile(u) for u in changed]
                    + [layout.applied(p, event_id) for event_id in applied])
            bumps = msgpack.packb(pairs[p], use_bin_type=True) if pairs.get(p) else b""
            args: list[Any] = ([self.name, GROUP, self.applied_ttl_s, len(changed), bumps,
                                self.max_stream_length]
                               + [encode_profile(self._cache[u]) for u in changed]
                               + [e.entry_id for e in entries if e.partition == p])
            self._commit(keys, args, pipe)
        committed = 0
        for p, result in zip(partitions, pipe.execute(), strict=True):
            if int(result) == -1:
                log.warning("worker %s: partition %d moved before its commit; its new "
                            "owner applies these entries", self.name, p)
                self.stats.lost_commits += 1
                self._drop(p)
            else:
                committed += sum(1 for e in fresh if e.partition == p)
        return committed

    # -- the loop -----------------------------------------------------------------------
    def step(self) -> int:
        """One pass: leases (every ``lease_ms / 3``), stale entries, new entries."""
        entries: list[Entry] = []
        now = time.monotonic()
        if now >= self._next_rebalance:
            self.rebalance()
            entries = self.claim_stale()
            self._next_rebalance = now + self.lease_ms / 3000.0
        entries += self.read_new()
        if self.item_log is not None:
            self.item_log.catch_up()
        applied = self.process(entries)
        if (0 in self.owned and time.monotonic() >= self._next_cohorts
                and (self._cohort_thread is None or not self._cohort_thread.is_alive())):
            # on a thread: a fit over every profile must not hold up lease renewals
            self._next_cohorts = math.inf
            self._cohort_thread = threading.Thread(
                target=self.fit_cohorts, name="cohort-fit", daemon=True)
            self._cohort_thread.start()
        return applied

    def fit_cohorts(self) -> bool:
        """Partition 0's owner fits the cohorts over every profile for the replicas;
        again after ``cohort_refresh_seconds``, or in ``COHORT_RETRY_S`` while too few
        users have vectors (as the embedded path tries on every catch-up)."""
        settings = self.state.settings
        try:
            fitted = fit_and_store(self.client, self.layout, settings, self.state.now())
        except Exception:  # the replicas keep the cohorts they have; tried again later
            log.exception("worker %s could not fit the cohorts", self.name)
            fitted = False
        wait = settings.cohort_refresh_seconds if fitted else COHORT_RETRY_S
        self._next_cohorts = time.monotonic() + wait
        return fitted

    def run(self, stop: threading.Event, *, idle_sleep_s: float = 0.02,
            follow_seconds: float = 1.0) -> None:
        next_follow = time.monotonic() + follow_seconds
        try:
            while not stop.is_set():
                try:
                    applied = self.step()
                    if time.monotonic() >= next_follow:
                        self.state.catalog.follow()  # approvals: the items events name
                        next_follow = time.monotonic() + follow_seconds
                except PASSING_FAULTS as exc:
                    log.warning("worker %s: Redis unavailable (%s); retrying", self.name, exc)
                    self._cache.clear()
                    stop.wait(1.0)
                    continue
                except redis.ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        raise
                    # The streams were deleted (a flushed or replaced Redis): start again.
                    log.warning("worker %s: %s; creating the groups again", self.name, exc)
                    self._cache.clear()
                    ensure_groups(self.client, self.layout)
                    stop.wait(1.0)
                    continue
                if not applied:
                    stop.wait(idle_sleep_s)
        finally:
            try:
                self.release_all()
            except redis.RedisError:  # leases expire by themselves
                log.warning("worker %s could not release its leases", self.name)


def open_worker(
    sessions: sessionmaker[Session], settings: RecommenderSettings, client: RedisClient,
    layout: StreamLayout, *, name: str | None = None, **options: Any,
) -> EventWorker:
    """A worker over the database's catalog (the items events name: tags, categories,
    vectors), with its own tail of every partition for the item counters."""
    catalog = Catalog.load(sessions, settings)
    state = OnlineState.create(settings, catalog)
    state.covisitation = PairRecorder(settings.covisitation_window,
                                      settings.covisitation_neighbours)
    item_log = RedisEventLog(client, layout, sessions, state, counters_only=True)
    item_log.catch_up()
    return EventWorker(client, layout, state, name=name, sessions=sessions,
                       item_log=item_log, **options)

"""The shared event stream and online store on Redis (used when ``REELSIFT_REDIS_URL`` is set).

The embedded default (``recommender.events.EventLog`` over SQLite/PostgreSQL, every
process holding every profile) is untouched; this package is the scaled-out layout:

- ``log.RedisEventLog``: ``POST /v1/events`` appends each new event to one of
  ``partitions`` Redis Streams, chosen by a hash of its user id (``layout``); a Lua script
  accepts an ``event_id`` once per dedup window. Its ``catch_up`` tails every stream and
  folds the events into this process's item-level state (counters, co-engagement, the
  ranker's training labels) with ``OnlineState.apply_to_items``.
- ``worker.EventWorker`` (``reelsift worker events``): consumer-group workers that own
  partitions by lease, read them with XREADGROUP, apply each event once by ``event_id``
  to the profile it keeps in Redis with ``OnlineState.apply_to_profile`` (the same code as
  the embedded path), and commit profiles, applied markers and XACK in one fenced Lua
  call; a dead worker's pending entries are taken over with XAUTOCLAIM.
- ``profiles.RedisProfiles``: feed replicas read a user's profile with one GET.
- ``items.ItemChangeBus``: takedowns and approvals published to every replica (pub/sub).
"""

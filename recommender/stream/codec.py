"""Profiles and events as bytes in Redis: the existing ``UserProfile``, field by field.

MessagePack (not pickle: a value read from a shared server must not be able to run
code); a worker writes a profile per user per batch and a replica reads one per feed, and
msgpack does both 3-4x faster than ``json`` (30 µs against 120 to encode a typical
profile). The user vector travels as the bytes of its float32 array.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import msgpack
import numpy as np

from core.contracts import Event
from recommender.profiles import DecayedMap, UserProfile

VERSION = 2


def _cells(decayed: DecayedMap) -> dict[str, list[float]]:
    return decayed._values  # (value, as-of time) per key: the map's whole state


def encode_profile(profile: UserProfile) -> bytes:
    vector = profile.vector_sum
    body: dict[str, Any] = {
        "v": VERSION,
        "tags": _cells(profile.tags), "categories": _cells(profile.categories),
        "creators": _cells(profile.creators),
        "vector_sum": (np.asarray(vector, np.float32).tobytes()
                       if vector is not None else None),
        "vector_weight": profile.vector_weight, "vector_ts": profile.vector_ts,
        "seen": list(profile.seen), "blocked": list(profile.blocked),
        "followed": list(profile.followed),
        "recent_positives": [list(p) for p in profile.recent_positives],
        "session_items": profile.session_items, "last_ts": profile.last_ts,
        "n_events": profile.n_events, "n_positives": profile.n_positives,
    }
    return bytes(msgpack.packb(body, use_bin_type=True))


def decode_profile(
    raw: bytes, user_id: str, half_life_s: float, recent_positives: int,
) -> UserProfile:
    body = msgpack.unpackb(raw, raw=False)
    if body.get("v") != VERSION:
        raise ValueError(f"profile of {user_id!r} has format {body.get('v')!r}, not {VERSION}")
    profile = UserProfile(user_id, half_life_s)
    for name in ("tags", "categories", "creators"):
        getattr(profile, name)._values.update(body[name])
    if body["vector_sum"] is not None:
        profile.vector_sum = np.frombuffer(body["vector_sum"], dtype=np.float32).copy()
    profile.vector_weight = body["vector_weight"]
    profile.vector_ts = body["vector_ts"]
    profile.seen = set(body["seen"])
    profile.blocked = set(body["blocked"])
    profile.followed = set(body["followed"])
    profile.recent_positives = deque(
        ((item_id, ts) for item_id, ts in body["recent_positives"]), maxlen=recent_positives)
    profile.session_items = list(body["session_items"])
    profile.last_ts = body["last_ts"]
    profile.n_events = body["n_events"]
    profile.n_positives = body["n_positives"]
    return profile


def encode_event(event: Event) -> bytes:
    return event.model_dump_json().encode()


def decode_event(raw: bytes | str) -> Event:
    return Event.model_validate_json(raw)

"""Ranking features of (user, item, context) and their crosses, in a fixed layout.

The same function builds features when serving and when building training rows from the
log, so a model sees at serving time exactly what it was trained on. Channels enter as
membership flags (was the item proposed by channel X), which the impression's
``context["channels"]`` records at training time.

Dense features (in order, ``DENSE_FEATURES``): cosine(user vector, item vector); tag,
category and creator affinity (tanh-squashed decayed profile scores summed over the
item's tags/categories); followed creator; log popularity; log trending; freshness
(exp(-age / 1 day)); bounce rate; completion rate; hour of day as sine/cosine; user
activity (log events); cold user flag; number of channels; one flag per channel.
Categorical fields (``CATEGORICAL_FIELDS``): device, hour, item top category (hashed).
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from recommender.columns import MISSING, keyed_values, lookup, per_slot_sum
from recommender.profiles import UserProfile
from recommender.state import OnlineState

CHANNELS = (
    "embedding", "tag_category", "covisitation", "cohort", "trending", "fresh", "followed",
    "item_knn", "ease", "mf",
)
DENSE_FEATURES = (
    "cosine", "tag_affinity", "category_affinity", "creator_affinity", "followed",
    "log_popularity", "log_trending", "freshness", "bounce_rate", "completion_rate",
    "hour_sin", "hour_cos", "user_activity", "user_cold", "channel_count",
    *(f"channel_{c}" for c in CHANNELS),
)
DEVICES = ("unknown", "mobile", "desktop", "tablet", "tv")
CATEGORY_BUCKETS = 1024
CATEGORICAL_FIELDS = ("device", "hour", "item_category")
CATEGORICAL_SIZES = (len(DEVICES), 24, CATEGORY_BUCKETS)
FRESHNESS_SECONDS = 86_400.0
CHANNEL_COLUMN = {name: 15 + c for c, name in enumerate(CHANNELS)}


@dataclass
class FeatureBatch:
    item_ids: list[str]
    dense: np.ndarray  # (n, len(DENSE_FEATURES)) float32
    categorical: np.ndarray  # (n, len(CATEGORICAL_FIELDS)) int64
    channel_best: np.ndarray  # (n,) best rescaled channel score
    # (n, len(channel_names)): 1 / (1 + rank / rank_constant) in each channel, 0 where it
    # did not propose the item (``CandidateSet.rank_scores``); the heuristic ranker's input
    channel_ranks: np.ndarray | None = None
    channel_names: tuple[str, ...] = ()

    def column(self, name: str) -> np.ndarray:
        return self.dense[:, DENSE_FEATURES.index(name)]


def device_code(context: Mapping[str, object]) -> int:
    device = str(context.get("device") or "unknown").lower()
    return DEVICES.index(device) if device in DEVICES else 0


def context_hour(context: Mapping[str, object], now: float) -> int:
    hour = context.get("hour")
    if isinstance(hour, int) and 0 <= hour < 24:
        return hour
    return datetime.fromtimestamp(now, tz=UTC).hour


@functools.lru_cache(maxsize=65_536)
def category_bucket(category: str | None) -> int:
    if not category:
        return 0
    return 1 + zlib.crc32(category.encode()) % (CATEGORY_BUCKETS - 1)


def build_features(
    state: OnlineState, profile: UserProfile | None, item_ids: Sequence[str],
    channels: Sequence[Mapping[str, float]] | np.ndarray, context: Mapping[str, object],
    now: float, vectors: tuple[list[str], np.ndarray] | None = None,
    *, channel_names: Sequence[str] | None = None, rank_scores: np.ndarray | None = None,
) -> FeatureBatch:
    """``channels``: per item, the proposing channels and their scores; or, with
    ``channel_names``, a matrix of those scores (``CandidateSet.scores``, 0 = not
    proposed). ``vectors``: the items' (ids found, vectors) if the caller has them."""
    n = len(item_ids)
    dense = np.zeros((n, len(DENSE_FEATURES)), dtype=np.float32)
    cats = np.zeros((n, len(CATEGORICAL_FIELDS)), dtype=np.int64)
    hour = context_hour(context, now)
    angle = 2 * math.pi * hour / 24.0
    dense[:, 10] = math.sin(angle)
    dense[:, 11] = math.cos(angle)
    cats[:, 0] = device_code(context)
    cats[:, 1] = hour
    if profile is not None:
        dense[:, 12] = math.log1p(profile.n_events)
        dense[:, 13] = float(profile.is_cold)
        user_vec = profile.vector
    else:
        dense[:, 13] = 1.0
        user_vec = None
    if n == 0:
        return FeatureBatch([], dense, cats, np.zeros(0, dtype=np.float32))

    if user_vec is not None and user_vec.shape[0] == state.catalog.index.dim:
        found, vecs = vectors if vectors is not None else state.catalog.vectors(list(item_ids))
        if len(found):
            if len(found) == n:
                dense[:, 0] = vecs @ user_vec
            else:
                row_of = {item_id: r for r, item_id in enumerate(item_ids)}
                dense[np.asarray([row_of[i] for i in found]), 0] = vecs @ user_vec

    _item_features(state, profile, item_ids, now, dense, cats)
    _counter_features(state, item_ids, now, dense)
    best = _channel_features(channels, channel_names, dense)
    return FeatureBatch(list(item_ids), dense, cats, best, rank_scores,
                        tuple(channel_names or ()))


def _item_features(
    state: OnlineState, profile: UserProfile | None, item_ids: Sequence[str], now: float,
    dense: np.ndarray, cats: np.ndarray,
) -> None:
    """Affinities, followed creator, freshness and category bucket (0 for a missing item)."""
    catalog = state.catalog
    columns = catalog.columns
    vocab = catalog.vocab
    slots = columns.slots(item_ids)  # before reading the columns (see recommender.columns)
    creator = columns.creator[slots]
    if profile is not None:
        # Decay the user's interests once per request, not once per (item, key).
        as_of = profile.as_of(now)
        tags = profile.tags.snapshot(as_of)
        if tags:
            sums = per_slot_sum(slots, columns.tag_ptr, columns.tag_codes,
                                keyed_values(tags, vocab))
            dense[:, 1] = np.tanh(sums / 2.0)
        categories = profile.categories.snapshot(as_of)
        if categories:
            sums = per_slot_sum(slots, columns.cat_ptr, columns.cat_codes,
                                keyed_values(categories, vocab), columns.cat_confidence)
            dense[:, 2] = np.tanh(sums / 2.0)
        creators = profile.creators.snapshot(as_of)
        if creators:
            dense[:, 3] = np.tanh(lookup(creator, keyed_values(creators, vocab)) / 2.0)
        followed = profile.followed
        if followed:
            dense[:, 4] = np.isin(creator, vocab.lookup(followed, len(followed)))
    present = slots != MISSING
    age = now - columns.created[slots]
    # an item dated after the feed's clock (a release date ahead of a replayed log) is
    # not fresh: it does not exist yet as of that time
    dense[:, 7] = np.where(present & (age >= 0), np.exp(-np.maximum(age, 0.0)
                                                        / FRESHNESS_SECONDS), 0.0)
    top = columns.top_category[slots]
    buckets = vocab.mapped("category_bucket", category_bucket)
    cats[:, 2] = np.where(top >= 0, buckets[np.maximum(top, 0)], 0)
    if not present.all():
        dense[~present, 1:5] = 0.0


def _counter_features(
    state: OnlineState, item_ids: Sequence[str], now: float, dense: np.ndarray
) -> None:
    """Log popularity, log trending, bounce and completion rates (0 without events)."""
    positives, trending, trending_ts, views, bounces, completes = state.stats.table(item_ids).T
    dense[:, 5] = np.log1p(positives)
    decayed = np.where(
        trending > 0,
        trending * np.power(0.5, (now - trending_ts) / state.stats.half_life_s), 0.0)
    dense[:, 6] = np.log1p(decayed)
    seen = views > 0
    safe_views = np.where(seen, views, 1.0)
    dense[:, 8] = np.where(seen, bounces / safe_views, 0.0)
    dense[:, 9] = np.where(seen, completes / safe_views, 0.0)


def _channel_features(
    channels: Sequence[Mapping[str, float]] | np.ndarray, names: Sequence[str] | None,
    dense: np.ndarray,
) -> np.ndarray:
    """Channel count and membership flags; returns each item's best channel score."""
    n = dense.shape[0]
    if names is not None:
        matrix = np.asarray(channels, dtype=np.float64).reshape(n, len(names))
        proposed = matrix > 0
        dense[:, 14] = proposed.sum(axis=1)
        for c, name in enumerate(names):
            column = CHANNEL_COLUMN.get(name)
            if column is not None:
                dense[:, column] = proposed[:, c]
        return matrix.max(axis=1, initial=0.0).astype(np.float32)
    best = np.zeros(n, dtype=np.float32)
    for r in range(n):
        proposed_here = channels[r] if r < len(channels) else {}
        dense[r, 14] = len(proposed_here)
        for name in proposed_here:
            column = CHANNEL_COLUMN.get(name)
            if column is not None:
                dense[r, column] = 1.0
        best[r] = max(proposed_here.values(), default=0.0)
    return best
